// ProcessMetrics: CPU time and memory of this process (the standard process_* families) and of
// the machine (Triton's nv_cpu_* gauges), read from /proc at scrape time. Elsewhere than Linux
// it reports nothing.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

public final class ProcessMetrics: MetricsSource {
    /// The previous /proc/stat reading; utilization is measured between scrapes (since boot on
    /// the first one).
    private let previousCPU = Mutex<CPUTimes?>(nil)

    public init() {}

    public func collect(into registry: MetricsRegistry) {
        #if os(Linux)
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        let system = readFile("/proc/stat").flatMap(parseProcStat)
        if let text = readFile("/proc/self/stat"), let p = parseProcSelfStat(text) {
            registry.counter("process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.")
                .set(Double(p.userTicks + p.systemTicks) / ticksPerSecond)
            if let bootTime = system?.bootTime {
                registry.gauge("process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.")
                    .set(Double(bootTime) + Double(p.startTicks) / ticksPerSecond)
            }
        }
        if let text = readFile("/proc/self/statm"), let m = parseProcSelfStatm(text) {
            registry.gauge("process_resident_memory_bytes", help: "Resident memory size in bytes.")
                .set(Double(m.residentPages) * pageSize)
            registry.gauge("process_virtual_memory_bytes", help: "Virtual memory size in bytes.")
                .set(Double(m.sizePages) * pageSize)
        }
        if let cpu = system?.cpu {
            let previous = previousCPU.withLock { p -> CPUTimes? in defer { p = cpu }; return p }
            registry.gauge("nv_cpu_utilization", help: "CPU utilization rate [0.0 - 1.0]")
                .set(cpu.utilization(since: previous))
        }
        if let text = readFile("/proc/meminfo"), let m = parseMeminfo(text) {
            registry.gauge("nv_cpu_memory_total_bytes", help: "CPU total memory (RAM), in bytes").set(Double(m.totalBytes))
            registry.gauge("nv_cpu_memory_used_bytes", help: "CPU used memory (RAM), in bytes")
                .set(Double(m.totalBytes - m.availableBytes))
        }
        #endif
    }
}

// MARK: - /proc parsing (pure, for tests)

struct ProcSelfStat: Equatable {
    var userTicks: UInt64
    var systemTicks: UInt64
    var startTicks: UInt64
}

/// /proc/self/stat: fields after the parenthesised command name (which may hold spaces).
func parseProcSelfStat(_ text: String) -> ProcSelfStat? {
    guard let close = text.lastIndex(of: ")") else { return nil }
    let f = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
    // f[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
    guard f.count > 19, let u = UInt64(f[11]), let s = UInt64(f[12]), let start = UInt64(f[19]) else { return nil }
    return ProcSelfStat(userTicks: u, systemTicks: s, startTicks: start)
}

struct ProcSelfStatm: Equatable {
    var sizePages: UInt64
    var residentPages: UInt64
}

func parseProcSelfStatm(_ text: String) -> ProcSelfStatm? {
    let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
    guard f.count >= 2, let size = UInt64(f[0]), let rss = UInt64(f[1]) else { return nil }
    return ProcSelfStatm(sizePages: size, residentPages: rss)
}

struct CPUTimes: Equatable, Sendable {
    var busy: UInt64
    var total: UInt64

    /// Busy share of the time since `previous` (since boot without one).
    func utilization(since previous: CPUTimes?) -> Double {
        let busy = self.busy - min(previous?.busy ?? 0, self.busy)
        let total = self.total - min(previous?.total ?? 0, self.total)
        return total == 0 ? 0 : Double(busy) / Double(total)
    }
}

struct ProcStat: Equatable {
    var cpu: CPUTimes?
    var bootTime: UInt64?
}

/// /proc/stat: the aggregate `cpu` line (idle and iowait count as not busy) and `btime`.
func parseProcStat(_ text: String) -> ProcStat? {
    var result = ProcStat()
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        if f.first == "cpu" {
            let ticks = f.dropFirst().prefix(8).compactMap { UInt64($0) }
            guard ticks.count >= 5 else { return nil }
            let total = ticks.reduce(0, +)
            result.cpu = CPUTimes(busy: total - ticks[3] - ticks[4], total: total)
        } else if f.first == "btime", f.count >= 2 {
            result.bootTime = UInt64(f[1])
        }
    }
    return result.cpu == nil && result.bootTime == nil ? nil : result
}

struct Meminfo: Equatable {
    var totalBytes: UInt64
    var availableBytes: UInt64
}

func parseMeminfo(_ text: String) -> Meminfo? {
    var total: UInt64?
    var available: UInt64?
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        guard f.count >= 2, let kB = UInt64(f[1]) else { continue }
        if f[0] == "MemTotal:" { total = kB * 1024 }
        if f[0] == "MemAvailable:" { available = kB * 1024 }
    }
    guard let total, let available else { return nil }
    return Meminfo(totalBytes: total, availableBytes: min(available, total))
}

/// A small file read whole (the /proc files are generated on read, so no size is known).
func readFile(_ path: String) -> String? {
    #if os(Linux)
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
    #else
    return nil
    #endif
}
