/*
 * ks_vmm.h - driving a VMM from a vCPU plan (issue 7).
 *
 * A ks_vmm_driver turns a ks_plan (common/ks_vm.h) into the configuration of one
 * VMM and applies it: QEMU (command line + QMP + sched_setaffinity), libvirt
 * (domain XML, virsh when a URI is configured), Cloud Hypervisor and Firecracker
 * (REST over their unix sockets), or "dry-run" (records the plan, touches nothing).
 *
 * Every operation fills a ks_vmm_result that says exactly what happened to each
 * part of the plan:
 *   - applied        the VMM now does what the plan says for that item;
 *   - dropped        the VMM cannot express it (e.g. clusters on QEMU 7.2 x86, a
 *                    feature without a QEMU name, a PMU filter under TCG);
 *   - needs_restart  the VMM can do it, but not on a running VM;
 *   - failed         it was attempted and failed (the operation returns an error).
 * An operation that fails part-way returns the error AND leaves in the result the
 * items applied before the failure, so a half-applied plan is never unreported.
 *
 * Threading: a driver and its VMs are not thread-safe; callers serialise (the agent
 * server holds one lock around every driver call).  Library code: never prints.
 */
#ifndef KS_VMM_H
#define KS_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ks_err.h"
#include "ks_vm.h"

/* ---------------------------------------------------------------- results */

typedef enum ks_vmm_outcome {
    KS_VMM_APPLIED,
    KS_VMM_DROPPED,
    KS_VMM_NEEDS_RESTART,
    KS_VMM_FAILED,
    KS_VMM_OUTCOME__COUNT
} ks_vmm_outcome;

/* "applied", "dropped", "needs_restart", "failed" */
const char *ks_vmm_outcome_to_str(ks_vmm_outcome o);

#define KS_VMM_ITEM_MAX 64
#define KS_VMM_DETAIL_MAX 256
#define KS_VMM_MAX_NOTES 4096 /* per result; more are counted in n_lost */

typedef struct ks_vmm_note {
    uint8_t outcome;                 /* ks_vmm_outcome */
    char item[KS_VMM_ITEM_MAX];      /* "vcpu[2].pin", "feature.avx2", "topology.clusters" */
    char detail[KS_VMM_DETAIL_MAX];  /* one line, why / what exactly */
} ks_vmm_note;

typedef struct ks_vmm_result {
    uint64_t generation;   /* plan generation the notes are about */
    uint32_t n_notes, cap;
    ks_vmm_note *notes;    /* owned, in the order things happened */
    uint32_t n_lost;       /* notes not recorded (cap or allocation failure) */
} ks_vmm_result;

void ks_vmm_result_init(ks_vmm_result *r);
/* Frees the notes; the struct can be re-used after ks_vmm_result_init(). NULL-safe. */
void ks_vmm_result_destroy(ks_vmm_result *r);
void ks_vmm_result_reset(ks_vmm_result *r);
/* Appends a note (item and detail truncated to their buffers). */
void ks_vmm_result_add(ks_vmm_result *r, ks_vmm_outcome o, const char *item, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
uint32_t ks_vmm_result_count(const ks_vmm_result *r, ks_vmm_outcome o);
/* First note for `item` (exact match), NULL if none.  Borrowed. */
const ks_vmm_note *ks_vmm_result_find(const ks_vmm_result *r, const char *item);
/* Appends copies of all notes of src to dst. */
void ks_vmm_result_append(ks_vmm_result *dst, const ks_vmm_result *src);
/* {"generation":G,"applied":[{"item","detail"}],"dropped":[...],"needs_restart":[...],
 *  "failed":[...],"lost":n}; NULL only on allocation failure. */
json_t *ks_vmm_result_to_json(const ks_vmm_result *r);

/* ---------------------------------------------------------------- state */

typedef struct ks_vmm_vcpu_state {
    int32_t id;
    int64_t thread_id;     /* host thread id of the vCPU, 0 when the VMM does not say */
    int32_t host_cpu;      /* where the applied plan pins it, -1 unpinned */
    char affinity[128];    /* current affinity as a CPU list ("0-1,4"), "" unknown */
} ks_vmm_vcpu_state;

typedef struct ks_vmm_state {
    char vm[KS_ID_MAX];
    char driver[32];
    uint64_t generation;   /* last plan generation accepted by the driver */
    bool running;          /* the VMM process/domain is alive (dry-run: true) */
    pid_t pid;             /* VMM process, 0 when unknown */
    char control[256];     /* QMP/API socket or domain XML path, "" when none */
    uint32_t n_vcpus;
    ks_vmm_vcpu_state *vcpus; /* owned */
} ks_vmm_state;

void ks_vmm_state_init(ks_vmm_state *s);
void ks_vmm_state_destroy(ks_vmm_state *s); /* NULL-safe */
/* {"vm","driver","generation","running","pid","control","vcpus":[{"id","thread_id",
 *  "host_cpu","affinity"}]}; NULL only on allocation failure. */
json_t *ks_vmm_state_to_json(const ks_vmm_state *s);

/* ---------------------------------------------------------------- drivers */

typedef struct ks_vmm_options {
    const char *driver;        /* "qemu" | "libvirt" | "cloud-hypervisor" | "firecracker" |
                                * "dry-run" */
    const char *state_dir;     /* sockets, logs, pid files, generated configs (must exist) */
    /* qemu */
    const char *qemu_binary;   /* default "qemu-system-x86_64" (PATH lookup) */
    const char *accel;         /* "auto" (kvm when /dev/kvm works, else tcg) | "kvm" | "tcg" */
    const char *machine;       /* default "q35" */
    uint64_t start_timeout_us; /* VMM start until its control socket answers; default 10 s */
    uint64_t stop_timeout_us;  /* graceful stop before SIGKILL; default 5 s */
    /* libvirt */
    const char *libvirt_uri;   /* NULL: generate XML only (reported), never call virsh */
    const char *virsh_binary;  /* default "virsh" */
    /* cloud-hypervisor / firecracker */
    const char *vmm_binary;    /* when set, the driver starts it with its API socket;
                                * otherwise it expects <state_dir>/<vm>.<driver>.sock */
    const char *kernel;        /* guest kernel for CH payload / FC boot-source; NULL: not booted */
    const char *cmdline;       /* guest kernel command line (optional) */
} ks_vmm_options;

#define KS_VMM_OPTIONS_INIT                                                                      \
    {                                                                                            \
        .driver = "dry-run", .state_dir = "/run/kintsugi", .qemu_binary = "qemu-system-x86_64", \
        .accel = "auto", .machine = "q35", .start_timeout_us = 10000000,                        \
        .stop_timeout_us = 5000000, .virsh_binary = "virsh"                                     \
    }

typedef struct ks_vmm_driver ks_vmm_driver;
typedef struct ks_vmm_vm ks_vmm_vm; /* one VM under a driver */

/*
 * Creates the driver named by opts->driver.  The option strings are copied.
 * KS_EINVAL: unknown driver name or bad option; KS_EUNAVAIL: the VMM binary is
 * missing (qemu: probed with -version and -cpu help).
 */
ks_code ks_vmm_driver_new(ks_vmm_driver **out, const ks_vmm_options *opts, ks_err *err);
void ks_vmm_driver_free(ks_vmm_driver *d); /* NULL-safe; does not stop VMs */
const char *ks_vmm_driver_name(const ks_vmm_driver *d);

/*
 * Starts a VM from `plan` (copied).  On success *out is the VM handle (free it with
 * ks_vmm_destroy).  On failure nothing keeps running (a half-started VMM is
 * killed) and `res` lists what had been applied and what failed.
 * KS_EINVAL bad plan; KS_EUNSUPPORTED the VMM cannot run this plan at all;
 * KS_EUNAVAIL the VMM did not start or answer; KS_EIO pinning failed (KS_EINVAL when
 * a planned host CPU does not exist or is not usable here).
 */
ks_code ks_vmm_create(ks_vmm_vm **out, ks_vmm_driver *d, const ks_plan *plan,
                      ks_vmm_result *res, ks_err *err);
/*
 * Applies a newer generation to a running VM, online where the VMM can (QEMU:
 * re-pinning vCPU threads); everything else is reported needs_restart.  The VM's
 * generation becomes plan->generation when the call returns KS_OK.
 * KS_ECONFLICT plan->generation <= the VM's; KS_EINVAL plan for another VM;
 * KS_EUNAVAIL the VMM is gone; KS_EIO pinning failed (res lists what was done).
 */
ks_code ks_vmm_apply(ks_vmm_driver *d, ks_vmm_vm *vm, const ks_plan *plan, ks_vmm_result *res,
                     ks_err *err);
/* Current state: generation, per-vCPU thread ids and affinity.  *out is filled on
 * success (ks_vmm_state_destroy it). KS_EUNAVAIL the VMM does not answer. */
ks_code ks_vmm_query(ks_vmm_state *out, ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err);
/* Stops the VM (graceful, then forced after stop_timeout_us), removes its sockets
 * and frees `vm` in every case.  NULL-safe.  Returns the first error met. */
ks_code ks_vmm_destroy(ks_vmm_driver *d, ks_vmm_vm *vm, ks_err *err);
/* Borrowed: the plan last accepted for the VM. */
const ks_plan *ks_vmm_vm_plan(const ks_vmm_vm *vm);
/* Borrowed: the notes that still stand for the VM (dropped / needs_restart
 * accumulated since it started). */
const ks_vmm_result *ks_vmm_vm_standing(const ks_vmm_vm *vm);

/* ---------------------------------------------------------------- building blocks
 * Pure functions the drivers use, exported for tests and for `kintsugictl plan
 * --explain`-style tooling.  None starts a process. */

/* Checks the plan is self-consistent (ids 0..n-1, distinct host CPUs, topology
 * product >= n_vcpus, VM name usable in paths and option strings). KS_EINVAL. */
ks_code ks_vmm_plan_check(const ks_plan *plan, ks_err *err);

/* Guest topology a VMM can express.  When clusters are unsupported they are folded
 * into dies (when the plan has one die per socket: each L2 group becomes a die) or
 * else into cores, and a dropped note says so. */
typedef struct ks_vmm_topology {
    uint32_t sockets, dies, clusters, cores, threads; /* clusters is 1 when folded */
} ks_vmm_topology;
void ks_vmm_topology_for(ks_vmm_topology *out, const ks_plan *plan, bool clusters_supported,
                         const char *vmm, ks_vmm_result *res);

typedef struct ks_vmm_argv {
    size_t n, cap;
    char **v; /* NULL-terminated */
} ks_vmm_argv;
void ks_vmm_argv_destroy(ks_vmm_argv *a); /* NULL-safe */
/* Space-joined copy (for logs and golden tests); caller frees. NULL on ENOMEM. */
char *ks_vmm_argv_join(const ks_vmm_argv *a);

/* What the QEMU binary can do; filled by ks_vmm_qemu_probe(). */
typedef struct ks_vmm_qemu_caps {
    int major, minor, micro;
    bool kvm;                /* accelerate with KVM (else TCG) */
    bool clusters;           /* -smp clusters= accepted on x86 (QEMU >= 9.0) */
    char *known_flags;       /* " flag1 flag2 ... " from -cpu help, NULL = accept all */
} ks_vmm_qemu_caps;
void ks_vmm_qemu_caps_destroy(ks_vmm_qemu_caps *c);
/* Runs `binary -version` and `binary -cpu help`; accel "auto"|"kvm"|"tcg". */
ks_code ks_vmm_qemu_probe(ks_vmm_qemu_caps *out, const char *binary, const char *accel,
                          ks_err *err);

typedef struct ks_vmm_qemu_paths {
    const char *binary, *machine, *qmp_socket, *pidfile;
} ks_vmm_qemu_paths;
/*
 * The QEMU command line for a plan (see ks_vmm_qemu.c for the mapping).  Notes for
 * what the command line expresses, what it cannot (dropped) go to `res`.
 * KS_EINVAL bad plan.
 */
ks_code ks_vmm_qemu_argv(ks_vmm_argv *out, const ks_plan *plan, const ks_vmm_qemu_caps *caps,
                         const ks_vmm_qemu_paths *paths, ks_vmm_result *res, ks_err *err);

/* libvirt domain XML for a plan (caller frees *out).  domain_type "kvm"|"qemu". */
ks_code ks_vmm_libvirt_xml(char **out, const ks_plan *plan, const char *domain_type,
                           const char *machine, ks_vmm_result *res, ks_err *err);

/* Cloud Hypervisor VmConfig (PUT /api/v1/vm.create body); kernel may be NULL. */
ks_code ks_vmm_ch_vm_config(json_t **out, const ks_plan *plan, const char *kernel,
                            const char *cmdline, ks_vmm_result *res, ks_err *err);
/* Firecracker MachineConfiguration (PUT /machine-config).  KS_EINVAL when the
 * vCPU count is not 1 or an even number <= 32. */
ks_code ks_vmm_fc_machine_config(json_t **out, const ks_plan *plan, ks_vmm_result *res,
                                 ks_err *err);
/* Firecracker custom CPU template (PUT /cpu-config): cpuid_modifiers clearing the
 * CPUID bit of every feature in plan->disable, one entry per (leaf, subleaf), one
 * modifier per register. */
ks_code ks_vmm_fc_cpu_template(json_t **out, const ks_plan *plan, ks_vmm_result *res,
                               ks_err *err);

/* Formats a CPU list ("0-3,8") from a cpu_set_t-like bitmap; returns buf. */
const char *ks_vmm_cpulist(char *buf, size_t cap, const uint8_t *bits, size_t n_bits);

#endif
