// threadpool.c: a small spinning-then-sleeping thread pool for the CPU kernels.
// One job at a time (calls from several threads are serialised by a mutex).
#define _GNU_SOURCE
#include "petrel_cpu.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <sched.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PK_PAUSE() _mm_pause()
#else
#define PK_PAUSE() ((void)0)
#endif

#define PK_MAX_THREADS 64
#define PK_SPIN 20000

typedef struct {
    pk_range_fn fn;
    void *ctx;
    int64_t n, grain, chunks;
} pk_job;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;   // held while configuring
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;    // one job at a time
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static int pool_threads = 0;          // including the caller
static pthread_t workers[PK_MAX_THREADS];
static pk_job current;
static _Atomic int64_t generation = 0;
static _Atomic int64_t next_chunk = 0;
static _Atomic int done_workers = 0;

static void run_chunks(void) {
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed);
        if (c >= current.chunks) break;
        int64_t b = c * current.grain;
        int64_t e = b + current.grain;
        if (e > current.n) e = current.n;
        current.fn(current.ctx, b, e);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    int64_t seen = 0;  // workers start before the first job is published
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&generation, memory_order_acquire) == seen && spins < PK_SPIN) {
            PK_PAUSE();
            spins++;
        }
        if (atomic_load_explicit(&generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&sleep_lock);
            while (atomic_load_explicit(&generation, memory_order_acquire) == seen)
                pthread_cond_wait(&sleep_cond, &sleep_lock);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = atomic_load_explicit(&generation, memory_order_acquire);
        run_chunks();
        atomic_fetch_add_explicit(&done_workers, 1, memory_order_release);
    }
    return NULL;
}

void pk_set_threads(int n) {
    pthread_mutex_lock(&pool_lock);
    if (pool_threads == 0) {
        if (n <= 0) {
            long c = sysconf(_SC_NPROCESSORS_ONLN);
            n = c > 0 ? (int)c : 1;
        }
        if (n > PK_MAX_THREADS) n = PK_MAX_THREADS;
        for (int i = 1; i < n; i++) pthread_create(&workers[i], NULL, worker_main, NULL);
        pool_threads = n;
    }
    pthread_mutex_unlock(&pool_lock);
}

int pk_get_threads(void) {
    if (pool_threads == 0) pk_set_threads(0);
    return pool_threads;
}

void pk_parallel_for(int64_t n, int64_t grain, pk_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int threads = pk_get_threads();
    int64_t chunks = (n + grain - 1) / grain;
    if (threads == 1 || chunks == 1) { fn(ctx, 0, n); return; }
    pthread_mutex_lock(&job_lock);
    current.fn = fn; current.ctx = ctx; current.n = n; current.grain = grain; current.chunks = chunks;
    atomic_store_explicit(&next_chunk, 0, memory_order_relaxed);
    atomic_store_explicit(&done_workers, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&generation, 1, memory_order_release);
    pthread_mutex_lock(&sleep_lock);
    pthread_cond_broadcast(&sleep_cond);
    pthread_mutex_unlock(&sleep_lock);
    run_chunks();
    // Spin briefly, then yield: on an oversubscribed machine the workers may need this core.
    for (int spins = 0; atomic_load_explicit(&done_workers, memory_order_acquire) < threads - 1; spins++) {
        if (spins < 4096) PK_PAUSE(); else sched_yield();
    }
    pthread_mutex_unlock(&job_lock);
}
