// NVML (libnvidia-ml, the NVIDIA driver's management library), loaded at run time like the CUDA
// library: Triton's GPU metrics for every GPU the driver shows, labelled gpu_uuid —
// nv_gpu_utilization (0..1), nv_gpu_memory_total_bytes, nv_gpu_memory_used_bytes,
// nv_gpu_power_usage and nv_gpu_power_limit (watts), nv_energy_consumption (joules since the
// driver loaded, a counter). Where the library is missing (no driver: CI, a CPU host) `load`
// answers nil and nothing is reported. Every call is read at scrape time; NVML is thread-safe.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

public final class NVMLMetrics: MetricsSource, @unchecked Sendable {
    // @unchecked: only immutable C function pointers and the library handle, set once in init.
    private typealias Count = @convention(c) (UnsafeMutablePointer<UInt32>) -> Int32
    private typealias Handle = @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Text = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>, UInt32) -> Int32
    private typealias Pair32 = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt32>) -> Int32
    private typealias Value64 = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt64>) -> Int32
    private typealias Init = @convention(c) () -> Int32

    private let library: UnsafeMutableRawPointer
    private let count: Count
    private let handle: Handle
    private let uuid: Text
    private let utilization: Pair32     // nvmlUtilization_t: gpu %, memory %
    private let memory: Value64         // nvmlMemory_t: total, free, used bytes
    private let power: Pair32           // milliwatts
    private let powerLimit: Pair32      // milliwatts
    private let energy: Value64         // millijoules
    /// Each GPU's energy count when it was first read: nv_energy_consumption counts from there.
    private let energyAtStart = Mutex<[String: UInt64]>([:])

    /// The driver's NVML, initialised, or nil where it is missing or fails to start.
    public static func load(path: String = "libnvidia-ml.so.1") -> NVMLMetrics? {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { return nil }
        func symbol<F>(_ name: String, _: F.Type) -> F? {
            dlsym(library, name).map { unsafeBitCast($0, to: F.self) }
        }
        guard let initialise = symbol("nvmlInit_v2", Init.self), initialise() == 0,
              let count = symbol("nvmlDeviceGetCount_v2", Count.self),
              let handle = symbol("nvmlDeviceGetHandleByIndex_v2", Handle.self),
              let uuid = symbol("nvmlDeviceGetUUID", Text.self),
              let utilization = symbol("nvmlDeviceGetUtilizationRates", Pair32.self),
              let memory = symbol("nvmlDeviceGetMemoryInfo", Value64.self),
              let power = symbol("nvmlDeviceGetPowerUsage", Pair32.self),
              let powerLimit = symbol("nvmlDeviceGetEnforcedPowerLimit", Pair32.self),
              let energy = symbol("nvmlDeviceGetTotalEnergyConsumption", Value64.self)
        else {
            dlclose(library)
            return nil
        }
        return NVMLMetrics(library: library, count: count, handle: handle, uuid: uuid, utilization: utilization, memory: memory,
                           power: power, powerLimit: powerLimit, energy: energy)
    }

    private init(library: UnsafeMutableRawPointer, count: Count, handle: Handle, uuid: Text, utilization: Pair32, memory: Value64,
                 power: Pair32, powerLimit: Pair32, energy: Value64) {
        self.library = library
        self.count = count
        self.handle = handle
        self.uuid = uuid
        self.utilization = utilization
        self.memory = memory
        self.power = power
        self.powerLimit = powerLimit
        self.energy = energy
    }

    /// One GPU's figures at this moment (nil fields: NVML could not say, e.g. no power sensor).
    public struct Reading: Sendable, Equatable {
        public var uuid: String
        public var utilization: Double?
        public var memoryTotal: UInt64?
        public var memoryUsed: UInt64?
        public var powerWatts: Double?
        public var powerLimitWatts: Double?
        public var energyJoules: Double?
    }

    public func read() -> [Reading] {
        var n: UInt32 = 0
        guard count(&n) == 0 else { return [] }
        var readings: [Reading] = []
        for i in 0..<n {
            var device: OpaquePointer?
            guard handle(i, &device) == 0 else { continue }
            var text = [CChar](repeating: 0, count: 96)
            guard uuid(device, &text, UInt32(text.count)) == 0 else { continue }
            var r = Reading(uuid: String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            var rates: [UInt32] = [0, 0]
            if utilization(device, &rates) == 0 { r.utilization = Double(rates[0]) / 100 }
            var mem: [UInt64] = [0, 0, 0]
            if memory(device, &mem) == 0 {
                r.memoryTotal = mem[0]
                r.memoryUsed = mem[2]
            }
            var milliwatts: UInt32 = 0
            if power(device, &milliwatts) == 0 { r.powerWatts = Double(milliwatts) / 1000 }
            if powerLimit(device, &milliwatts) == 0 { r.powerLimitWatts = Double(milliwatts) / 1000 }
            var millijoules: UInt64 = 0
            if energy(device, &millijoules) == 0 {
                let start = energyAtStart.withLock { first in
                    if let s = first[r.uuid] { return s }
                    first[r.uuid] = millijoules
                    return millijoules
                }
                r.energyJoules = Double(millijoules &- start) / 1000
            }
            readings.append(r)
        }
        return readings
    }

    public func collect(into registry: MetricsRegistry) {
        for r in read() {
            let labels: Labels = ["gpu_uuid": r.uuid]
            if let v = r.utilization { registry.gauge("nv_gpu_utilization", help: "GPU utilization rate [0.0 - 1.0)").set(labels, v) }
            if let v = r.memoryTotal { registry.gauge("nv_gpu_memory_total_bytes", help: "GPU total memory, in bytes").set(labels, Double(v)) }
            if let v = r.memoryUsed { registry.gauge("nv_gpu_memory_used_bytes", help: "GPU used memory, in bytes").set(labels, Double(v)) }
            if let v = r.powerWatts { registry.gauge("nv_gpu_power_usage", help: "GPU power usage in watts").set(labels, v) }
            if let v = r.powerLimitWatts { registry.gauge("nv_gpu_power_limit", help: "GPU power management limit in watts").set(labels, v) }
            if let v = r.energyJoules {
                registry.counter("nv_energy_consumption", help: "GPU energy consumption in joules since the Triton Server started").set(labels, v)
            }
        }
    }
}
