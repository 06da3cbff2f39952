// The CUDA backend where no library or GPU is present: construction fails with the clear
// message, never a crash. (The kernels themselves are checked on a GPU by `petrel selftest`.)
import CUDACompute
import Foundation
import Testing

@Suite struct CUDABackendLoadTests {
    @Test func missingLibraryThrowsClearError() {
        let path = NSTemporaryDirectory() + "/no-such-dir-\(UInt32.random(in: 0...UInt32.max))/libpetrel_cuda.so"
        do {
            _ = try CUDABackend(libraryPath: path)
            Issue.record("expected the load to fail")
        } catch let error as CUDABackendError {
            #expect(error.description.hasPrefix("--device cuda: cannot load libpetrel_cuda.so ("))
            #expect(error.description.contains(path))
            #expect(error.description.contains("build kernels/cuda on a machine with CUDA"))
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    @Test func notALibraryThrowsClearError() throws {
        let path = NSTemporaryDirectory() + "/petrel-not-a-library-\(UInt32.random(in: 0...UInt32.max)).so"
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: CUDABackendError.self) { _ = try CUDABackend(libraryPath: path) }
    }

    @Test func libraryWithoutPetrelSymbolsThrowsClearError() {
        // Any shared library that is not ours (libc is always there) must be refused by name.
        do {
            _ = try CUDABackend(libraryPath: "libc.so.6")
            Issue.record("expected the load to fail")
        } catch let error as CUDABackendError {
            #expect(error.description.contains("petrel_abi_version"))
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
    }

    @Test func defaultLibraryIsNextToTheExecutable() {
        // Without a path the library is looked for next to the test executable, where none is built.
        #expect(throws: CUDABackendError.self) { _ = try CUDABackend() }
    }
}
