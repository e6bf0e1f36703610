/*
 * test_ks_vmm.c - plan -> VMM configuration, without starting anything:
 * QEMU command lines (golden argv, clusters fallback, feature names, NUMA, PMU),
 * libvirt domain XML (validated by virt-xml-validate), Firecracker machine config
 * and CPU template (validated by the upstream JSON schema), Cloud Hypervisor
 * VmConfig, plan checks, results, and the dry-run driver.
 */
#include "ks_test.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include "ks_feature.h"
#include "ks_vmm.h"

/* ---------------------------------------------------------------- helpers */

static unsigned fid(const char *name)
{
    unsigned id = 0;
    ks_err err = {0};
    assert_int_equal(ks_feature_lookup(name, &id, &err), KS_OK);
    return id;
}

/* n vCPUs pinned to host_cpus[i], topology s/d/cl/co/t, 256 MiB, model "host". */
static ks_plan *mk_plan(const char *vm, uint32_t n, const int *host_cpus, uint32_t s, uint32_t d,
                        uint32_t cl, uint32_t co, uint32_t t)
{
    ks_plan *p = NULL;
    assert_int_equal(ks_plan_new(&p, n, NULL), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "%s", vm);
    p->memory_mib = 256;
    p->topology.sockets = s;
    p->topology.dies = d;
    p->topology.clusters = cl;
    p->topology.cores = co;
    p->topology.threads = t;
    for (uint32_t i = 0; i < n; i++)
        p->vcpus[i].host_cpu = host_cpus ? host_cpus[i] : (int)i;
    return p;
}

static void add_numa(ks_plan *p, uint32_t n_nodes, const int32_t *first_vcpu,
                     const int32_t *n_vcpus, const uint64_t *mib, const int32_t *host_node)
{
    p->numa = calloc(n_nodes, sizeof(*p->numa));
    assert_non_null(p->numa);
    p->n_numa = n_nodes;
    for (uint32_t k = 0; k < n_nodes; k++) {
        p->numa[k].node = (int32_t)k;
        p->numa[k].host_node = host_node[k];
        p->numa[k].memory_mib = mib[k];
        p->numa[k].n_vcpus = (uint32_t)n_vcpus[k];
        p->numa[k].vcpus = calloc((size_t)n_vcpus[k], sizeof(int32_t));
        assert_non_null(p->numa[k].vcpus);
        for (int32_t j = 0; j < n_vcpus[k]; j++)
            p->numa[k].vcpus[j] = first_vcpu[k] + j;
    }
}

static ks_vmm_qemu_caps caps_72(bool kvm)
{
    ks_vmm_qemu_caps c = {.major = 7, .minor = 2, .micro = 22, .kvm = kvm, .clusters = false};
    c.known_flags = strdup(" avx avx2 avx512f sha-ni sse4.2 aes fma ");
    assert_non_null(c.known_flags);
    return c;
}

static const ks_vmm_qemu_paths PATHS = {"qemu-system-x86_64", "q35", "/run/ks/web-1.qmp",
                                        "/run/ks/web-1.pid"};

/* Builds the argv and compares it, space-joined, with `want`. */
static void expect_argv(const ks_plan *p, const ks_vmm_qemu_caps *caps, ks_vmm_result *res,
                        const char *want)
{
    ks_vmm_argv a = {0};
    ks_err err = {0};
    assert_int_equal(ks_vmm_qemu_argv(&a, p, caps, &PATHS, res, &err), KS_OK);
    char *got = ks_vmm_argv_join(&a);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("argv mismatch\n got: %s\nwant: %s", got, want);
    assert_null(a.v[a.n]);
    free(got);
    ks_vmm_argv_destroy(&a);
}

static void expect_note(const ks_vmm_result *r, const char *item, ks_vmm_outcome o,
                        const char *substr)
{
    const ks_vmm_note *n = ks_vmm_result_find(r, item);
    if (!n)
        fail_msg("no note for '%s'", item);
    if (n->outcome != o)
        fail_msg("note '%s' is %s, want %s (%s)", item, ks_vmm_outcome_to_str(n->outcome),
                 ks_vmm_outcome_to_str(o), n->detail);
    if (substr && !strstr(n->detail, substr))
        fail_msg("note '%s' detail '%s' lacks '%s'", item, n->detail, substr);
}

/* ---------------------------------------------------------------- QEMU argv */

static void test_vmm__qemu_argv_clusters_fallback_72(void **state)
{
    ks_plan *p = mk_plan("web-1", 4, NULL, 1, 1, 2, 2, 1);
    ks_featset_set(&p->disable, fid("avx2"));
    ks_featset_set(&p->disable, fid("sdbg")); /* no QEMU name in the catalogue */
    p->pmu.enabled = true;
    p->pmu.allow_events = calloc(1, KS_NAME_MAX);
    assert_non_null(p->pmu.allow_events);
    snprintf(p->pmu.allow_events[0], KS_NAME_MAX, "instructions");
    p->pmu.n_allow = 1;
    ks_vmm_qemu_caps caps = caps_72(false);
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    /* QEMU 7.2 rejects clusters= on x86: the two L2 groups become two dies. */
    expect_argv(p, &caps, &res,
                "qemu-system-x86_64 -name web-1,debug-threads=on -machine q35 -accel tcg "
                "-cpu max,-avx2,pmu=on -smp 4,sockets=1,dies=2,cores=2,threads=1 -m 256M "
                "-nographic -nodefaults -qmp unix:/run/ks/web-1.qmp,server=on,wait=off "
                "-pidfile /run/ks/web-1.pid");
    expect_note(&res, "topology.clusters", KS_VMM_DROPPED, "dies=2");
    expect_note(&res, "feature.avx2", KS_VMM_APPLIED, "-avx2");
    expect_note(&res, "feature.sdbg", KS_VMM_DROPPED, "no QEMU");
    expect_note(&res, "pmu.filter", KS_VMM_DROPPED, "TCG");
    expect_note(&res, "features.model", KS_VMM_APPLIED, "'max' under TCG");
    ks_vmm_result_destroy(&res);
    ks_vmm_qemu_caps_destroy(&caps);
    ks_plan_free(p);
}

static void test_vmm__qemu_argv_clusters_supported(void **state)
{
    ks_plan *p = mk_plan("web-1", 4, NULL, 1, 1, 2, 2, 1);
    ks_vmm_qemu_caps caps = caps_72(false);
    caps.major = 9;
    caps.minor = 0;
    caps.clusters = true;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    expect_argv(p, &caps, &res,
                "qemu-system-x86_64 -name web-1,debug-threads=on -machine q35 -accel tcg "
                "-cpu max,pmu=off -smp 4,sockets=1,dies=1,clusters=2,cores=2,threads=1 -m 256M "
                "-nographic -nodefaults -qmp unix:/run/ks/web-1.qmp,server=on,wait=off "
                "-pidfile /run/ks/web-1.pid");
    assert_null(ks_vmm_result_find(&res, "topology.clusters"));
    assert_int_equal(ks_vmm_result_count(&res, KS_VMM_DROPPED), 0);
    ks_vmm_result_destroy(&res);
    ks_vmm_qemu_caps_destroy(&caps);
    ks_plan_free(p);
}

static void test_vmm__qemu_argv_clusters_into_cores(void **state)
{
    /* The plan already uses dies: clusters can only be folded into cores. */
    ks_plan *p = mk_plan("web-1", 8, NULL, 1, 2, 2, 2, 1);
    ks_vmm_qemu_caps caps = caps_72(false);
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    expect_argv(p, &caps, &res,
                "qemu-system-x86_64 -name web-1,debug-threads=on -machine q35 -accel tcg "
                "-cpu max,pmu=off -smp 8,sockets=1,dies=2,cores=4,threads=1 -m 256M "
                "-nographic -nodefaults -qmp unix:/run/ks/web-1.qmp,server=on,wait=off "
                "-pidfile /run/ks/web-1.pid");
    expect_note(&res, "topology.clusters", KS_VMM_DROPPED, "cores=4");
    ks_vmm_result_destroy(&res);
    ks_vmm_qemu_caps_destroy(&caps);
    ks_plan_free(p);
}

static void test_vmm__qemu_argv_kvm_maxcpus_numa(void **state)
{
    /* 3 vCPUs in a 4-slot topology, two guest NUMA nodes, KVM, features hidden. */
    ks_plan *p = mk_plan("db.2", 3, (int[]){5, 7, 9}, 1, 1, 1, 2, 2);
    ks_featset_set(&p->disable, fid("avx512f"));
    ks_featset_set(&p->disable, fid("sha_ni"));
    int32_t first[] = {0, 2}, count[] = {2, 1}, host[] = {0, -1};
    uint64_t mib[] = {128, 128};
    add_numa(p, 2, first, count, mib, host);
    ks_vmm_qemu_caps caps = caps_72(true);
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    expect_argv(p, &caps, &res,
                "qemu-system-x86_64 -name db.2,debug-threads=on -machine q35 -accel kvm "
                "-cpu host,-avx512f,-sha-ni,pmu=off "
                "-smp 3,maxcpus=4,sockets=1,dies=1,cores=2,threads=2 -m 256M "
                "-object memory-backend-ram,id=ks-mem0,size=128M,host-nodes=0,policy=bind "
                "-numa node,nodeid=0,cpus=0-1,memdev=ks-mem0 "
                "-object memory-backend-ram,id=ks-mem1,size=128M "
                "-numa node,nodeid=1,cpus=2,memdev=ks-mem1 "
                "-nographic -nodefaults -qmp unix:/run/ks/web-1.qmp,server=on,wait=off "
                "-pidfile /run/ks/web-1.pid");
    expect_note(&res, "feature.sha_ni", KS_VMM_APPLIED, "-sha-ni");
    expect_note(&res, "numa", KS_VMM_APPLIED, "2 guest NUMA nodes");
    ks_vmm_result_destroy(&res);
    ks_vmm_qemu_caps_destroy(&caps);
    ks_plan_free(p);
}

static void test_vmm__qemu_argv_named_model_and_unknown_flag(void **state)
{
    ks_plan *p = mk_plan("web-1", 2, NULL, 1, 1, 1, 2, 1);
    snprintf(p->cpu_model, sizeof(p->cpu_model), "Skylake-Client");
    ks_featset_set(&p->visible, fid("sse4_2"));
    ks_featset_set(&p->visible, fid("aes"));
    ks_featset_set(&p->disable, fid("avx2"));
    ks_featset_set(&p->disable, fid("avx_vnni")); /* QEMU name "avx-vnni": not in the list */
    ks_vmm_qemu_caps caps = caps_72(false);
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    expect_argv(p, &caps, &res,
                "qemu-system-x86_64 -name web-1,debug-threads=on -machine q35 -accel tcg "
                "-cpu Skylake-Client,-avx2,+sse4.2,+aes,pmu=off "
                "-smp 2,sockets=1,dies=1,cores=2,threads=1 -m 256M "
                "-nographic -nodefaults -qmp unix:/run/ks/web-1.qmp,server=on,wait=off "
                "-pidfile /run/ks/web-1.pid");
    expect_note(&res, "feature.avx_vnni", KS_VMM_DROPPED, "not a CPUID flag of this QEMU 7.2");
    ks_vmm_result_destroy(&res);
    ks_vmm_qemu_caps_destroy(&caps);
    ks_plan_free(p);
}

static void test_vmm__plan_check_rejects(void **state)
{
    ks_err err = {0};
    ks_plan *p = mk_plan("ok", 2, (int[]){1, 1}, 1, 1, 1, 2, 1);
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "host cpu 1"));
    p->vcpus[1].host_cpu = 0;
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_OK);
    snprintf(p->vm, sizeof(p->vm), "bad,name=x");
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_EINVAL);
    assert_string_equal(err.field, "vm");
    snprintf(p->vm, sizeof(p->vm), "ok");
    p->topology.cores = 1;
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_EINVAL);
    assert_string_equal(err.field, "topology");
    p->topology.cores = 2;
    p->vcpus[1].id = 5;
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_EINVAL);
    assert_string_equal(err.field, "vcpus[1]");
    p->vcpus[1].id = 1;
    p->memory_mib = 0;
    assert_int_equal(ks_vmm_plan_check(p, &err), KS_EINVAL);
    ks_plan_free(p);
    assert_int_equal(ks_vmm_plan_check(NULL, &err), KS_EINVAL);
}

static void test_vmm__result_json(void **state)
{
    ks_vmm_result r;
    ks_vmm_result_init(&r);
    r.generation = 7;
    ks_vmm_result_add(&r, KS_VMM_APPLIED, "vcpu[0].pin", "pinned to %d", 3);
    ks_vmm_result_add(&r, KS_VMM_DROPPED, "topology.clusters", "folded");
    ks_vmm_result_add(&r, KS_VMM_NEEDS_RESTART, "features", "hide [avx2]");
    json_t *j = ks_vmm_result_to_json(&r);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 7);
    assert_int_equal(json_array_size(json_object_get(j, "applied")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "dropped")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "needs_restart")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "failed")), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "applied"), 0),
                                          "detail")),
        "pinned to 3");
    json_decref(j);
    /* The cap bounds memory; the overflow is counted, not silently lost. */
    for (int i = 0; i < KS_VMM_MAX_NOTES + 5; i++)
        ks_vmm_result_add(&r, KS_VMM_APPLIED, "x", "y");
    assert_int_equal(r.n_notes, KS_VMM_MAX_NOTES);
    assert_int_equal(r.n_lost, 8);
    ks_vmm_result_destroy(&r);
}

static void test_vmm__cpulist(void **state)
{
    uint8_t bits[4] = {0};
    char buf[64];
    assert_string_equal(ks_vmm_cpulist(buf, sizeof(buf), bits, 32), "");
    bits[0] = 0x0f; /* 0-3 */
    bits[1] = 0x01; /* 8 */
    bits[3] = 0xc0; /* 30-31 */
    assert_string_equal(ks_vmm_cpulist(buf, sizeof(buf), bits, 32), "0-3,8,30-31");
}

/* ---------------------------------------------------------------- libvirt */

/* Writes xml to a temp file and runs virt-xml-validate; returns its exit status.
 * A missing validator fails the test (it must be installed: scripts/deps.sh). */
static int validate_xml(const char *xml)
{
    char dir[256], path[320], cmd[700];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(path, sizeof(path), "%s/dom.xml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(xml, f);
    fclose(f);
    if (system("command -v virt-xml-validate >/dev/null 2>&1") != 0)
        fail_msg("virt-xml-validate is not installed (Debian libvirt-clients)");
    ks_test_path(cmd, sizeof(cmd), "virt-xml-validate '%s' domain >'%s/out' 2>&1", path, dir);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc != 0) {
        char out[400];
        ks_test_path(out, sizeof(out), "%s/out", dir);
        char *text = ks_test_read_file(out, NULL);
        fprintf(stderr, "virt-xml-validate: %s\n%s\n", text ? text : "", xml);
        free(text);
    }
    ks_test_rmdir(dir);
    return rc;
}

static void test_vmm__libvirt_xml_valid(void **state)
{
    ks_plan *p = mk_plan("web-1", 4, (int[]){0, 1, 2, 3}, 1, 1, 2, 2, 1);
    ks_featset_set(&p->disable, fid("avx2"));
    ks_featset_set(&p->disable, fid("sdbg"));
    p->pmu.enabled = true;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    char *xml = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_libvirt_xml(&xml, p, "kvm", "q35", &res, &err), KS_OK);
    assert_non_null(strstr(xml, "<vcpu placement='static'>4</vcpu>"));
    assert_non_null(strstr(xml, "<vcpupin vcpu='3' cpuset='3'/>"));
    assert_non_null(strstr(xml, "<cpu mode='host-passthrough'"));
    assert_non_null(strstr(xml, "<topology sockets='1' dies='2' cores='2' threads='1'/>"));
    assert_non_null(strstr(xml, "<feature policy='disable' name='avx2'/>"));
    assert_non_null(strstr(xml, "<pmu state='on'/>"));
    assert_null(strstr(xml, "clusters"));
    expect_note(&res, "topology.clusters", KS_VMM_DROPPED, "libvirt");
    expect_note(&res, "feature.sdbg", KS_VMM_DROPPED, "no libvirt feature name");
    assert_int_equal(validate_xml(xml), 0);
    free(xml);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
}

static void test_vmm__libvirt_xml_custom_numa_escaped(void **state)
{
    ks_plan *p = mk_plan("db-2", 3, (int[]){4, 6, 8}, 1, 1, 1, 2, 2);
    /* A hostile model name must come out escaped (the validator rejects raw '<'). */
    snprintf(p->cpu_model, sizeof(p->cpu_model), "Sky<lake>&'\"");
    ks_featset_set(&p->visible, fid("sse4_2"));
    ks_featset_set(&p->disable, fid("avx512f"));
    int32_t first[] = {0, 2}, count[] = {2, 1}, host[] = {0, 1};
    uint64_t mib[] = {128, 128};
    add_numa(p, 2, first, count, mib, host);
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    char *xml = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_libvirt_xml(&xml, p, "qemu", "pc", &res, &err), KS_OK);
    assert_non_null(
        strstr(xml, "<model fallback='forbid'>Sky&lt;lake&gt;&amp;&apos;&quot;</model>"));
    assert_non_null(strstr(xml, "<vcpu placement='static' current='3'>4</vcpu>"));
    assert_non_null(strstr(xml, "<feature policy='require' name='sse4.2'/>"));
    assert_non_null(strstr(xml, "<cell id='0' cpus='0-1' memory='128' unit='MiB'/>"));
    assert_non_null(strstr(xml, "<memnode cellid='1' mode='strict' nodeset='1'/>"));
    assert_int_equal(validate_xml(xml), 0);
    free(xml);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
}

static void test_vmm__libvirt_xml_validator_catches_bad(void **state)
{
    /* The validation above is meaningful: a clusters attribute is rejected. */
    assert_int_not_equal(
        validate_xml("<domain type='kvm'><name>x</name><memory unit='MiB'>64</memory>"
                     "<os><type arch='x86_64'>hvm</type></os><cpu><topology sockets='1' "
                     "clusters='2' cores='1' threads='1'/></cpu></domain>\n"),
        0);
}

static void test_vmm__libvirt_driver_writes_xml(void **state)
{
    char dir[256], path[320];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    o.driver = "libvirt";
    o.state_dir = dir;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_OK);
    ks_plan *p = mk_plan("web-1", 2, NULL, 1, 1, 1, 2, 1);
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_OK);
    expect_note(&res, "start", KS_VMM_DROPPED, "no libvirt URI");
    ks_test_path(path, sizeof(path), "%s/web-1.xml", dir);
    char *xml = ks_test_read_file(path, NULL);
    assert_non_null(xml);
    assert_int_equal(validate_xml(xml), 0);
    free(xml);
    /* A newer generation moving a vCPU: only in the XML without a URI. */
    p->generation = 2;
    p->vcpus[1].host_cpu = 5;
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_OK);
    expect_note(&res, "vcpu[1].pin", KS_VMM_DROPPED, "only in the XML");
    xml = ks_test_read_file(path, NULL);
    assert_non_null(strstr(xml, "<vcpupin vcpu='1' cpuset='5'/>"));
    free(xml);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    assert_int_not_equal(access(path, F_OK), 0);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
    ks_test_rmdir(dir);
}

/* With a URI the driver calls virsh; a fake virsh logs its arguments (and fails
 * "start" when FAIL_START exists) so the exact calls can be checked. */
static void test_vmm__libvirt_driver_calls_virsh(void **state)
{
    char dir[256], script[320], log[320], cmd[800];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(script, sizeof(script), "%s/virsh", dir);
    ks_test_path(log, sizeof(log), "%s/virsh.log", dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "echo \"$*\" >> '%s'\n"
            "[ \"$3\" = start ] && [ -e '%s/FAIL_START' ] &&\n"
            "    { echo 'error: no kvm' >&2; exit 1; }\n"
            "[ \"$3\" = domstate ] && echo running\n"
            "exit 0\n",
            log, dir);
    fclose(f);
    assert_int_equal(chmod(script, 0755), 0);

    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    o.driver = "libvirt";
    o.state_dir = dir;
    o.libvirt_uri = "qemu:///system";
    o.virsh_binary = script;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_OK);
    ks_plan *p = mk_plan("web-1", 2, NULL, 1, 1, 1, 2, 1);
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_OK);
    expect_note(&res, "define", KS_VMM_APPLIED, "web-1.xml");
    expect_note(&res, "start", KS_VMM_APPLIED, "virsh start web-1");
    p->generation = 2;
    p->vcpus[1].host_cpu = 5;
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_OK);
    expect_note(&res, "vcpu[1].pin", KS_VMM_APPLIED, "--live");
    ks_vmm_state st;
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_true(st.running);
    ks_vmm_state_destroy(&st);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    char *text = ks_test_read_file(log, NULL);
    assert_non_null(text);
    char want[2048];
    ks_test_path(want, sizeof(want),
                 "-c qemu:///system define %s/web-1.xml\n"
                 "-c qemu:///system start web-1\n"
                 "-c qemu:///system vcpupin web-1 1 5 --live\n"
                 "-c qemu:///system define %s/web-1.xml\n"
                 "-c qemu:///system domstate web-1\n"
                 "-c qemu:///system destroy web-1\n"
                 "-c qemu:///system undefine web-1\n",
                 dir, dir);
    assert_string_equal(text, want);
    free(text);

    /* virsh start fails: the error carries virsh's message, the define that had
     * been applied is reported, and the domain is undefined again. */
    unlink(log);
    ks_test_path(cmd, sizeof(cmd), "touch '%s/FAIL_START'", dir);
    assert_int_equal(system(cmd), 0);
    p->generation = 1;
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_EIO);
    assert_non_null(strstr(err.msg, "no kvm"));
    expect_note(&res, "define", KS_VMM_APPLIED, NULL);
    expect_note(&res, "start", KS_VMM_FAILED, "no kvm");
    text = ks_test_read_file(log, NULL);
    assert_non_null(strstr(text, "undefine web-1"));
    free(text);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
    ks_test_rmdir(dir);
}

/* ---------------------------------------------------------------- Firecracker / CH */

static void test_vmm__fc_machine_config(void **state)
{
    ks_err err = {0};
    json_t *mc = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    uint32_t bad[] = {3, 5, 34};
    for (size_t i = 0; i < 3; i++) {
        ks_plan *p = mk_plan("fc", bad[i], NULL, 1, 1, 1, bad[i], 1);
        assert_int_equal(ks_vmm_fc_machine_config(&mc, p, &res, &err), KS_EINVAL);
        assert_non_null(strstr(err.msg, "1 or an even number"));
        ks_plan_free(p);
    }
    ks_plan *p = mk_plan("fc", 4, NULL, 2, 1, 1, 1, 2);
    assert_int_equal(ks_vmm_fc_machine_config(&mc, p, &res, &err), KS_OK);
    assert_int_equal(json_integer_value(json_object_get(mc, "vcpu_count")), 4);
    assert_int_equal(json_integer_value(json_object_get(mc, "mem_size_mib")), 256);
    assert_true(json_is_true(json_object_get(mc, "smt")));
    expect_note(&res, "topology", KS_VMM_DROPPED, "sockets=2");
    json_decref(mc);
    ks_plan_free(p);
    p = mk_plan("fc", 1, NULL, 1, 1, 1, 1, 1);
    assert_int_equal(ks_vmm_fc_machine_config(&mc, p, &res, &err), KS_OK);
    assert_true(json_is_false(json_object_get(mc, "smt")));
    json_decref(mc);
    ks_plan_free(p);
    ks_vmm_result_destroy(&res);
}

/* Validates doc against the upstream Firecracker CPU-template schema with python3
 * jsonschema (Debian python3-jsonschema); returns the exit status. */
static int validate_template(const json_t *doc)
{
    char dir[256], path[320], cmd[1400];
    ks_test_mkdtemp(dir, sizeof(dir));
    ks_test_path(path, sizeof(path), "%s/tpl.json", dir);
    assert_int_equal(json_dump_file(doc, path, JSON_INDENT(2)), 0);
    if (system("/usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1") != 0)
        fail_msg("python3-jsonschema is not installed (scripts/deps.sh --test)");
    ks_test_path(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c 'import json,sys,jsonschema; "
                 "s=json.load(open(sys.argv[1])); d=json.load(open(sys.argv[2])); "
                 "jsonschema.Draft202012Validator(s).validate(d)' "
                 "'%s/vmm-api/firecracker/cpu-template-schema.json' '%s'",
                 ks_test_fixtures_dir(), path);
    int st = system(cmd);
    ks_test_rmdir(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_vmm__fc_cpu_template(void **state)
{
    ks_plan *p = mk_plan("fc", 2, NULL, 1, 1, 1, 2, 1);
    ks_featset_set(&p->disable, fid("avx2"));    /* 7.0 ebx 5 */
    ks_featset_set(&p->disable, fid("avx512f")); /* 7.0 ebx 16 */
    ks_featset_set(&p->disable, fid("sha_ni"));  /* 7.0 ebx 29 */
    ks_featset_set(&p->disable, fid("aes"));     /* 1 ecx 25 (no subleaf) */
    ks_featset_set(&p->disable, fid("asimd"));   /* arm64: no CPUID location */
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    json_t *tpl = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_fc_cpu_template(&tpl, p, &res, &err), KS_OK);
    json_t *mods = json_object_get(tpl, "cpuid_modifiers");
    assert_int_equal(json_array_size(mods), 2);
    json_t *l1 = json_array_get(mods, 0), *l7 = json_array_get(mods, 1);
    assert_string_equal(json_string_value(json_object_get(l1, "leaf")), "0x1");
    assert_string_equal(json_string_value(json_object_get(l1, "subleaf")), "0x0");
    assert_int_equal(json_integer_value(json_object_get(l1, "flags")), 0);
    json_t *m1 = json_array_get(json_object_get(l1, "modifiers"), 0);
    assert_string_equal(json_string_value(json_object_get(m1, "register")), "ecx");
    /* bit 25 cleared, MSB first: 6 x, 0, 25 x */
    assert_string_equal(json_string_value(json_object_get(m1, "bitmap")),
                        "0bxxxxxx0xxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_string_equal(json_string_value(json_object_get(l7, "leaf")), "0x7");
    assert_int_equal(json_integer_value(json_object_get(l7, "flags")), 1);
    assert_int_equal(json_array_size(json_object_get(l7, "modifiers")), 1);
    json_t *m7 = json_array_get(json_object_get(l7, "modifiers"), 0);
    assert_string_equal(json_string_value(json_object_get(m7, "register")), "ebx");
    /* bits 29, 16, 5 cleared */
    assert_string_equal(json_string_value(json_object_get(m7, "bitmap")),
                        "0bxx0xxxxxxxxxxxx0xxxxxxxxxx0xxxxx");
    expect_note(&res, "feature.asimd", KS_VMM_DROPPED, "no CPUID location");
    expect_note(&res, "feature.avx2", KS_VMM_APPLIED, "bit 5");
    assert_int_equal(validate_template(tpl), 0);
    json_decref(tpl);
    /* The schema check can fail: a bitmap that is not a string is rejected. */
    json_t *bad = json_pack("{s:[{s:s, s:s, s:i, s:[{s:s, s:i}]}]}", "cpuid_modifiers", "leaf",
                            "0x7", "subleaf", "0x0", "flags", 1, "modifiers", "register", "ebx",
                            "bitmap", 5);
    assert_int_not_equal(validate_template(bad), 0);
    json_decref(bad);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
}

static void test_vmm__ch_vm_config(void **state)
{
    ks_plan *p = mk_plan("ch", 4, (int[]){1, 0, 3, 2}, 1, 1, 2, 2, 1);
    ks_featset_set(&p->visible, fid("amx_tile"));
    ks_featset_set(&p->disable, fid("avx2"));
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    json_t *cfg = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_ch_vm_config(&cfg, p, "/boot/vmlinux", "console=ttyS0", &res, &err),
                     KS_OK);
    json_t *cpus = json_object_get(cfg, "cpus");
    assert_int_equal(json_integer_value(json_object_get(cpus, "boot_vcpus")), 4);
    assert_int_equal(json_integer_value(json_object_get(cpus, "max_vcpus")), 4);
    json_t *topo = json_object_get(cpus, "topology");
    assert_int_equal(json_integer_value(json_object_get(topo, "dies_per_package")), 2);
    assert_int_equal(json_integer_value(json_object_get(topo, "cores_per_die")), 2);
    assert_int_equal(json_integer_value(json_object_get(topo, "threads_per_core")), 1);
    assert_int_equal(json_integer_value(json_object_get(topo, "packages")), 1);
    json_t *aff = json_array_get(json_object_get(cpus, "affinity"), 0);
    assert_int_equal(json_integer_value(json_object_get(aff, "vcpu")), 0);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(aff, "host_cpus"), 0)), 1);
    assert_true(json_is_true(json_object_get(json_object_get(cpus, "features"), "amx")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(cfg, "memory"), "size")),
                     256 << 20);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(cfg, "payload"), "kernel")),
        "/boot/vmlinux");
    expect_note(&res, "feature.avx2", KS_VMM_DROPPED, "cannot hide");
    expect_note(&res, "topology.clusters", KS_VMM_DROPPED, "Cloud Hypervisor");
    json_decref(cfg);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
}

/* ---------------------------------------------------------------- drivers */

static void test_vmm__driver_options(void **state)
{
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    o.driver = "xen";
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_EINVAL);
    assert_string_equal(err.field, "driver");
    o.driver = "qemu";
    o.state_dir = "/nonexistent/kintsugi";
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_EINVAL);
    assert_string_equal(err.field, "state_dir");
    o.state_dir = "/tmp";
    o.qemu_binary = "/nonexistent/qemu";
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_EUNAVAIL);
    o.qemu_binary = "qemu-system-x86_64";
    o.accel = "hvf";
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_EINVAL);
    assert_null(d);
}

static void test_vmm__qemu_probe(void **state)
{
    ks_vmm_qemu_caps c = {0};
    ks_err err = {0};
    assert_int_equal(ks_vmm_qemu_probe(&c, "qemu-system-x86_64", "tcg", &err), KS_OK);
    assert_true(c.major >= 7);
    assert_false(c.kvm);
    assert_int_equal(c.clusters, c.major >= 9);
    assert_non_null(c.known_flags);
    assert_non_null(strstr(c.known_flags, " avx2 "));
    assert_non_null(strstr(c.known_flags, " sse4.2 "));
    ks_vmm_qemu_caps_destroy(&c);
}

static void test_vmm__dry_run_generations(void **state)
{
    ks_vmm_options o = KS_VMM_OPTIONS_INIT;
    ks_vmm_driver *d = NULL;
    ks_err err = {0};
    assert_int_equal(ks_vmm_driver_new(&d, &o, &err), KS_OK);
    assert_string_equal(ks_vmm_driver_name(d), "dry-run");
    ks_plan *p = mk_plan("web-1", 2, NULL, 1, 1, 1, 2, 1);
    p->generation = 5;
    ks_vmm_vm *vm = NULL;
    ks_vmm_result res;
    ks_vmm_result_init(&res);
    assert_int_equal(ks_vmm_create(&vm, d, p, &res, &err), KS_OK);
    assert_int_equal(res.generation, 5);
    p->generation = 4;
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_ECONFLICT);
    p->generation = 5;
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_ECONFLICT);
    p->generation = 6;
    snprintf(p->vm, sizeof(p->vm), "other");
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_EINVAL);
    snprintf(p->vm, sizeof(p->vm), "web-1");
    p->vcpus[0].host_cpu = 9;
    ks_vmm_result_reset(&res);
    assert_int_equal(ks_vmm_apply(d, vm, p, &res, &err), KS_OK);
    expect_note(&res, "vcpu[0].pin", KS_VMM_APPLIED, "9");
    ks_vmm_state st;
    assert_int_equal(ks_vmm_query(&st, d, vm, &err), KS_OK);
    assert_int_equal(st.generation, 6);
    assert_string_equal(st.vcpus[0].affinity, "9");
    json_t *j = ks_vmm_state_to_json(&st);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "driver")), "dry-run");
    json_decref(j);
    ks_vmm_state_destroy(&st);
    assert_int_equal(ks_vmm_destroy(d, vm, &err), KS_OK);
    ks_vmm_result_destroy(&res);
    ks_plan_free(p);
    ks_vmm_driver_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmm__qemu_argv_clusters_fallback_72),
        cmocka_unit_test(test_vmm__qemu_argv_clusters_supported),
        cmocka_unit_test(test_vmm__qemu_argv_clusters_into_cores),
        cmocka_unit_test(test_vmm__qemu_argv_kvm_maxcpus_numa),
        cmocka_unit_test(test_vmm__qemu_argv_named_model_and_unknown_flag),
        cmocka_unit_test(test_vmm__plan_check_rejects),
        cmocka_unit_test(test_vmm__result_json),
        cmocka_unit_test(test_vmm__cpulist),
        cmocka_unit_test(test_vmm__libvirt_xml_valid),
        cmocka_unit_test(test_vmm__libvirt_xml_custom_numa_escaped),
        cmocka_unit_test(test_vmm__libvirt_xml_validator_catches_bad),
        cmocka_unit_test(test_vmm__libvirt_driver_writes_xml),
        cmocka_unit_test(test_vmm__libvirt_driver_calls_virsh),
        cmocka_unit_test(test_vmm__fc_machine_config),
        cmocka_unit_test(test_vmm__fc_cpu_template),
        cmocka_unit_test(test_vmm__ch_vm_config),
        cmocka_unit_test(test_vmm__driver_options),
        cmocka_unit_test(test_vmm__qemu_probe),
        cmocka_unit_test(test_vmm__dry_run_generations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
