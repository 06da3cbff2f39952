// NVMLMetrics against a stand-in libnvidia-ml built here from C: the entry points NVML documents,
// two GPUs (the second without a power sensor), energy that grows between reads. Checks the
// binding (symbol names, argument and struct layouts, units) and the exposition it produces.
import Foundation
import Testing

@testable import Telemetry

@Suite struct NVMLTests {
    static let source = """
    #include <stdio.h>
    #include <string.h>
    typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
    typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
    typedef struct dev *nvmlDevice_t;
    static struct dev { int index; } devices[2] = {{0}, {1}};
    static int initialised = 0;
    static unsigned long long energy[2] = {1000000, 5000000};
    int nvmlInit_v2(void) { initialised = 1; return 0; }
    int nvmlDeviceGetCount_v2(unsigned int *n) { if (!initialised) return 1; *n = 2; return 0; }
    int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) { if (i > 1) return 2; *d = &devices[i]; return 0; }
    int nvmlDeviceGetUUID(nvmlDevice_t d, char *s, unsigned int n) { snprintf(s, n, "GPU-fake-%d", d->index); return 0; }
    int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) { u->gpu = d->index ? 7 : 93; u->memory = 40; return 0; }
    int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
        m->total = 85899345920ULL; m->used = d->index ? 1024 : 42949672960ULL; m->free = m->total - m->used; return 0;
    }
    int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) { if (d->index) return 3; *mw = 351250; return 0; }
    int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) { if (d->index) return 3; *mw = 700000; return 0; }
    int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
        energy[d->index] += 2500; *mj = energy[d->index]; return 0;
    }
    """

    /// Builds the stand-in with the toolchain's C compiler; the path of the .so.
    static func build() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-nvml-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let c = dir.appendingPathComponent("nvml.c"), so = dir.appendingPathComponent("libnvidia-ml.so.1")
        try source.write(to: c, atomically: true, encoding: .utf8)
        let compilers = ["/opt/swift/usr/bin/clang", "/usr/bin/clang", "/usr/bin/cc", "/usr/bin/gcc"]
        guard let compiler = compilers.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "no C compiler among \(compilers)"])
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: compiler)
        p.arguments = ["-shared", "-fPIC", "-o", so.path, c.path]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        return so.path
    }

    @Test func missingLibraryReportsNothing() {
        #expect(NVMLMetrics.load(path: "/nonexistent/libnvidia-ml.so.1") == nil)
    }

    @Test func readsEveryGPUInTritonsUnits() throws {
        let nvml = try #require(NVMLMetrics.load(path: try Self.build()))
        let first = nvml.read()
        #expect(first.count == 2)
        #expect(first[0] == NVMLMetrics.Reading(uuid: "GPU-fake-0", utilization: 0.93, memoryTotal: 85_899_345_920,
                                                memoryUsed: 42_949_672_960, powerWatts: 351.25, powerLimitWatts: 700,
                                                energyJoules: 0))
        #expect(first[1].uuid == "GPU-fake-1" && first[1].powerWatts == nil && first[1].powerLimitWatts == nil)
        #expect(first[1].utilization == 0.07 && first[1].memoryUsed == 1024)
        // Energy counts from the first read: 2.5 J more a read in the stand-in.
        #expect(nvml.read()[0].energyJoules == 2.5)

        let registry = MetricsRegistry()
        nvml.collect(into: registry)
        let text = registry.render()
        #expect(text.contains(#"nv_gpu_utilization{gpu_uuid="GPU-fake-0"} 0.93"#))
        #expect(text.contains(#"nv_gpu_memory_total_bytes{gpu_uuid="GPU-fake-1"} 85899345920"#))
        #expect(text.contains(#"nv_gpu_power_usage{gpu_uuid="GPU-fake-0"} 351.25"#))
        #expect(text.contains(#"nv_gpu_power_limit{gpu_uuid="GPU-fake-0"} 700"#))
        #expect(!text.contains(#"nv_gpu_power_usage{gpu_uuid="GPU-fake-1"}"#))
        #expect(text.contains("# TYPE nv_energy_consumption counter"))
        #expect(text.contains(#"nv_energy_consumption{gpu_uuid="GPU-fake-0"} 5"#))
    }
}
