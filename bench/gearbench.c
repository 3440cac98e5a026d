/* The C reference for the gearjob benchmark: libgearman's own client and worker.
 *
 *   gearbench worker HOST PORT FUNCTION         serve FUNCTION (echo the workload) until killed
 *   gearbench fg     HOST PORT FUNCTION N       N sequential foreground jobs
 *   gearbench bg     HOST PORT FUNCTION N       submit N background jobs
 *   gearbench batch  HOST PORT FUNCTION N       N foreground tasks at once (add_task + run_tasks)
 *
 * Client modes print one JSON object: {"jobs", "seconds", "p50_ms", "p99_ms", "failed"}.
 * Build: cc -O2 -o gearbench gearbench.c -lgearman
 */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char payload[] = "{\"func\":\"bench_echo\",\"args\":[\"x\"],\"site\":null,\"uid\":null}";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(long n, double seconds, double *lat, long nlat, long failed) {
    double p50 = 0, p99 = 0;
    if (nlat > 0) {
        qsort(lat, (size_t)nlat, sizeof(double), cmp_double);
        p50 = lat[nlat / 2] * 1000.0;
        p99 = lat[(long)((double)nlat * 0.99)] * 1000.0;
    }
    printf("{\"jobs\": %ld, \"seconds\": %.6f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"failed\": %ld}\n",
           n, seconds, p50, p99, failed);
}

static void *echo(gearman_job_st *job, void *context, size_t *result_size, gearman_return_t *ret) {
    (void)context;
    size_t n = gearman_job_workload_size(job);
    void *result = malloc(n ? n : 1);
    if (result == NULL) {
        *ret = GEARMAN_WORK_FAIL;
        return NULL;
    }
    memcpy(result, gearman_job_workload(job), n);
    *result_size = n;
    *ret = GEARMAN_SUCCESS;
    return result;
}

static long batch_failed = 0;
static double batch_start = 0;
static double *batch_lat = NULL;
static long batch_done = 0;

static gearman_return_t on_complete(gearman_task_st *task) {
    (void)task;
    batch_lat[batch_done++] = now() - batch_start;
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task) {
    (void)task;
    batch_failed++;
    return GEARMAN_SUCCESS;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s worker|fg|bg|batch HOST PORT FUNCTION [N]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *host = argv[2], *function = argv[4];
    in_port_t port = (in_port_t)atoi(argv[3]);
    long n = argc > 5 ? atol(argv[5]) : 0;

    if (strcmp(mode, "worker") == 0) {
        gearman_worker_st *worker = gearman_worker_create(NULL);
        gearman_worker_add_server(worker, host, port);
        gearman_worker_add_function(worker, function, 0, echo, NULL);
        for (;;) {
            gearman_return_t rc = gearman_worker_work(worker);
            if (gearman_failed(rc)) {
                fprintf(stderr, "worker: %s\n", gearman_worker_error(worker));
                return 1;
            }
        }
    }

    gearman_client_st *client = gearman_client_create(NULL);
    gearman_client_add_server(client, host, port);
    double *lat = calloc((size_t)(n ? n : 1), sizeof(double));
    long failed = 0;
    double start = now();
    if (strcmp(mode, "fg") == 0) {
        for (long i = 0; i < n; i++) {
            double t0 = now();
            size_t size;
            gearman_return_t rc;
            void *result = gearman_client_do(client, function, NULL, payload, sizeof payload - 1, &size, &rc);
            if (rc != GEARMAN_SUCCESS) failed++;
            free(result);
            lat[i] = now() - t0;
        }
        report(n, now() - start, lat, n, failed);
    } else if (strcmp(mode, "bg") == 0) {
        for (long i = 0; i < n; i++) {
            double t0 = now();
            gearman_job_handle_t handle;
            if (gearman_client_do_background(client, function, NULL, payload, sizeof payload - 1, handle)
                != GEARMAN_SUCCESS)
                failed++;
            lat[i] = now() - t0;
        }
        report(n, now() - start, lat, n, failed);
    } else if (strcmp(mode, "batch") == 0) {
        gearman_client_add_options(client, GEARMAN_CLIENT_FREE_TASKS);
        gearman_client_set_complete_fn(client, on_complete);
        gearman_client_set_fail_fn(client, on_fail);
        batch_lat = lat;
        batch_start = start;
        for (long i = 0; i < n; i++) {
            gearman_return_t rc;
            gearman_client_add_task(client, NULL, NULL, function, NULL, payload, sizeof payload - 1, &rc);
            if (rc != GEARMAN_SUCCESS) failed++;
        }
        if (gearman_client_run_tasks(client) != GEARMAN_SUCCESS) failed++;
        report(n, now() - start, lat, batch_done, failed + batch_failed);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    gearman_client_free(client);
    free(lat);
    return failed ? 1 : 0;
}
