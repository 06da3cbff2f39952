"""The card's two ceilings, measured (METHOD.md): device-to-device copy bandwidth (bytes read +
written) and the fp16 matrix rate (8192^3 GEMM, fp32 accumulation) on random data, each the
median of 20 timed runs after warm-up. Prints `PEAK_BW_GBS=` and `PEAK_TFLOPS=` lines.
Usage: python3 scripts/device_peaks.py"""
import statistics

import torch


def timed(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def main():
    name = torch.cuda.get_device_name()
    n = 1 << 30  # 2 GiB of fp16 each way
    a = torch.randn(n, device="cuda", dtype=torch.float16)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a))
    bw = 2 * a.numel() * 2 / t / 1e9
    del a, b
    m = 8192
    x = torch.randn(m, m, device="cuda", dtype=torch.float16)
    y = torch.randn(m, m, device="cuda", dtype=torch.float16)
    t = timed(lambda: x @ y)
    tflops = 2 * m ** 3 / t / 1e12
    print(f"card: {name}")
    print(f"copy bandwidth: {bw:.0f} GB/s (2 GiB device-to-device, read + write)")
    print(f"fp16 GEMM 8192^3: {tflops:.0f} TFLOP/s")
    print(f"PEAK_BW_GBS={bw:.0f}")
    print(f"PEAK_TFLOPS={tflops:.0f}")


if __name__ == "__main__":
    main()
