/*
 * ks_vmm_int.h - what the VMM drivers share inside agent/vmm/: the driver vtable,
 * the VM handle, and process/affinity helpers.  Not a public header.
 */
#ifndef KS_VMM_INT_H
#define KS_VMM_INT_H

#include <limits.h>
#include <sys/types.h>

#include "ks_vmm.h"

typedef struct ks_vmm_ops {
    const char *name;
    ks_code (*init)(ks_vmm_driver *d, ks_err *err);   /* may be NULL */
    void (*fini)(ks_vmm_driver *d);                    /* may be NULL */
    /* vm->plan is set; on failure the op leaves nothing running. */
    ks_code (*create)(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_result *res, ks_err *err);
    /* vm->plan is still the old plan; the wrapper swaps it in on KS_OK. */
    ks_code (*apply)(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                     ks_err *err);
    /* out->vm/driver/generation/n_vcpus/vcpus[].id/host_cpu are filled by the wrapper. */
    ks_code (*query)(ks_vmm_driver *d, ks_vmm_vm *vm, ks_vmm_state *out, ks_err *err);
    /* Stops the VM; the wrapper frees the handle. */
    ks_code (*destroy)(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err);
} ks_vmm_ops;

extern const ks_vmm_ops ks_vmm__qemu_ops;
extern const ks_vmm_ops ks_vmm__libvirt_ops;
extern const ks_vmm_ops ks_vmm__ch_ops;
extern const ks_vmm_ops ks_vmm__fc_ops;

struct ks_vmm_driver {
    const ks_vmm_ops *ops;
    ks_vmm_options opts;  /* strings point into the copies below */
    char *copies[12];
    void *priv;           /* driver-specific (qemu: ks_vmm_qemu_caps) */
};

struct ks_vmm_vm {
    ks_plan *plan;        /* last accepted plan */
    ks_plan *boot_plan;   /* the plan the VMM was started with */
    ks_vmm_result standing;
    uint32_t n_vcpus_running; /* vCPUs the VMM runs now (boot count + hot-plugged) */
    pid_t pid;            /* VMM process we started (0 none) */
    bool exited;          /* pid reaped */
    char sock[108];       /* control socket (sun_path sized) */
    char pidfile[PATH_MAX];
    char log[PATH_MAX];
    char config[PATH_MAX];/* generated config file (libvirt XML), "" none */
};

/* needs_restart notes for everything in `plan` that differs from `boot` (the plan
 * the VMM was started with) except vCPU pins: count, topology, memory, CPU model,
 * features, PMU, NUMA. */
void ks_vmm__restart_notes(const ks_plan *boot, const ks_plan *plan, ks_vmm_result *res);

/* Monotonic microseconds. */
uint64_t ks_vmm__now_us(void);
void ks_vmm__sleep_us(uint64_t us);
/* Builds "<state_dir>/<vm><suffix>" into buf; KS_EINVAL when it does not fit. */
ks_code ks_vmm__path(char *buf, size_t cap, const ks_vmm_driver *d, const char *vm,
                     const char *suffix, ks_err *err);
/* posix_spawnp in a new session, stdin /dev/null, stdout+stderr appended to log. */
ks_code ks_vmm__spawn(pid_t *out, char *const argv[], const char *log_path, ks_err *err);
/* true while the child runs; reaps it (vm->exited) once it has exited. */
bool ks_vmm__alive(ks_vmm_vm *vm);
/* Waits up to timeout_us for the child to exit, then SIGKILLs and reaps it. */
void ks_vmm__reap(ks_vmm_vm *vm, uint64_t timeout_us);
/* Last non-empty line of a log file into buf ("" when none). */
void ks_vmm__log_tail(const char *path, char *buf, size_t cap);
/* Pins thread tid to host CPU cpu.  KS_EIO with the errno text on failure. */
ks_code ks_vmm__pin(pid_t tid, int cpu, ks_err *err);
/* Reads Cpus_allowed_list of /proc/<pid>/task/<tid>/status into buf.  KS_EIO. */
ks_code ks_vmm__affinity(char *buf, size_t cap, pid_t pid, pid_t tid, ks_err *err);
/* Thread of process pid whose comm is `name` ("fc_vcpu 0"), 0 when none. */
pid_t ks_vmm__thread_by_name(pid_t pid, const char *name);
/* Runs argv to completion (stdout captured into *out when out != NULL, caller frees,
 * capped at 1 MiB); returns the exit status in *status (-1 when killed).  KS_EUNAVAIL
 * when it cannot run, KS_EIO on timeout. */
ks_code ks_vmm__run(char **out, int *status, char *const argv[], uint64_t timeout_us,
                    ks_err *err);
/* HTTP over a unix socket (libcurl).  body may be NULL; *resp (may be NULL) gets the
 * decoded JSON reply when there is one.  Non-2xx: KS_EINVAL for 4xx (message from
 * the VMM's fault_message / body), KS_EUNAVAIL for 5xx or no answer. */
ks_code ks_vmm__http(long *status, json_t **resp, const char *sock, const char *method,
                     const char *path, const json_t *body, uint64_t timeout_us, ks_err *err);

#endif
