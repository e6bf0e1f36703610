/*
 * test_ks_feature.c - the CPU feature catalogue (common/ks_feature*.c).
 *
 * The golden list below pins feature ids: ids are stored in databases, so
 * the table is append-only.  If test_feature__golden_order fails, a row was
 * moved, renamed, inserted or deleted: put it back and append instead.
 * Never "fix" this test by regenerating the list (only append to it).
 */
#include "ks_test.h"

#include <pthread.h>

#include "ks_feature.h"

/* The first KS_GOLDEN_N canonical names, in id order (append-only). */
/* clang-format off */
static const char *const k_golden[] = {
    "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce",
    "cx8", "apic", "sep", "mtrr", "pge", "mca", "cmov", "pat",
    "pse36", "pn", "clflush", "dts", "acpi", "mmx", "fxsr", "sse",
    "sse2", "ss", "ht", "tm", "ia64", "pbe", "syscall", "mp",
    "nx", "mmxext", "fxsr_opt", "pdpe1gb", "rdtscp", "lm", "3dnowext", "3dnow",
    "pni", "pclmulqdq", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est",
    "tm2", "ssse3", "cid", "sdbg", "fma", "cx16", "xtpr", "pdcm",
    "pcid", "dca", "sse4_1", "sse4_2", "x2apic", "movbe", "popcnt", "tsc_deadline_timer",
    "aes", "xsave", "osxsave", "avx", "f16c", "rdrand", "hypervisor", "lahf_lm",
    "cmp_legacy", "svm", "extapic", "cr8_legacy", "abm", "sse4a", "misalignsse", "3dnowprefetch",
    "osvw", "ibs", "xop", "skinit", "wdt", "lwp", "fma4", "tce",
    "nodeid_msr", "tbm", "topoext", "perfctr_core", "perfctr_nb", "bpext", "ptsc", "perfctr_llc",
    "mwaitx", "fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", "fdp_excptn_only",
    "smep", "bmi2", "erms", "invpcid", "rtm", "cqm", "zero_fcs_fds", "mpx",
    "rdt_a", "avx512f", "avx512dq", "rdseed", "adx", "smap", "avx512ifma", "pcommit",
    "clflushopt", "clwb", "intel_pt", "avx512pf", "avx512er", "avx512cd", "sha_ni", "avx512bw",
    "avx512vl", "xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd", "avx_vnni", "avx512_bf16",
    "avx512vbmi", "umip", "pku", "ospke", "waitpkg", "avx512_vbmi2", "shstk", "gfni",
    "vaes", "vpclmulqdq", "avx512_vnni", "avx512_bitalg", "tme", "avx512_vpopcntdq", "la57", "rdpid",
    "bus_lock_detect", "cldemote", "movdiri", "movdir64b", "enqcmd", "sgx_lc", "avx512_4vnniw", "avx512_4fmaps",
    "fsrm", "avx512_vp2intersect", "srbds_ctrl", "md_clear", "rtm_always_abort", "tsx_force_abort", "serialize", "hybrid_cpu",
    "tsxldtrk", "pconfig", "arch_lbr", "ibt", "amx_bf16", "avx512_fp16", "amx_tile", "amx_int8",
    "spec_ctrl", "intel_stibp", "flush_l1d", "arch_capabilities", "core_capabilities", "spec_ctrl_ssbd", "fp", "asimd",
    "evtstrm", "arm64_aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp",
    "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3",
    "arm64_sm3", "arm64_sm4", "asimddp", "arm64_sha512", "sve", "asimdfhm", "dit", "uscat",
    "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg", "dcpodp", "sve2",
    "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint", "svei8mm",
    "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "arm64_rng", "bti",
    "mte", "ecv", "afp", "rpres", "mte3", "arm64_sme", "smei16i64", "smef64f64",
    "smei8i32", "smef16f32", "smeb16f32", "smef32f32", "smefa64", "wfxt", "ebf16", "sveebf16",
    "cssc", "rprfm", "sve2p1", "sme2", "sme2p1", "smei16i32", "smebi32i32", "smeb16b16",
    "smef16f16", "mops", "hbc", "sveb16b16", "lrcpc3", "lse128", "fpmr", "lut",
    "faminmax", "f8cvt", "f8fma", "f8dp4", "f8dp2", "f8e4m3", "f8e5m2", "smelutv2",
    "smef8f16", "smef8f32", "smesf8fma", "smesf8dp4", "smesf8dp2", "poe", "gcs", "rng",
    "rng_en", "ace", "ace_en", "ace2", "ace2_en", "phe", "phe_en", "pmm",
    "pmm_en", "cvt16", "prefetchwt1", "kl", "pks", "uintr", "sha512", "sm3",
    "sm4", "rao_int", "lass", "cmpccxadd", "arch_perfmon_ext", "fzrm", "fsrs", "fsrc",
    "fred", "lkgs", "wrmsrns", "amx_fp16", "hreset", "avx_ifma", "lam", "msrlist",
    "avx_vnni_int8", "avx_ne_convert", "amx_complex", "avx_vnni_int16", "prefetchiti", "user_msr", "avx10", "apx",
    "intel_psfd", "ipred_ctrl", "rrsba_ctrl", "ddpd_u", "bhi_ctrl", "mcdt_no", "avx10_128", "avx10_256",
    "avx10_512", "aeskle", "wide_kl", "dtherm", "ida", "arat", "pln", "pts",
    "hwp", "hwp_notify", "hwp_act_window", "hwp_epp", "hwp_pkg_req", "hwp_highest_perf_change", "hfi", "epb",
    "cqm_llc", "cqm_occup_llc", "cqm_mbm_total", "cqm_mbm_local", "cat_l3", "cat_l2", "mba", "cdp_l3",
    "cdp_l2", "per_thread_mba", "sgx1", "sgx2", "sgx_edeccssa", "intel_pt_lip", "overflow_recov", "succor",
    "smca", "hw_pstate", "invtsc", "cpb", "proc_feedback", "clzero", "irperf", "xsaveerptr",
    "rdpru", "wbnoinvd", "amd_ibpb", "amd_ibrs", "amd_stibp", "amd_stibp_always_on", "amd_ppin", "amd_ssbd",
    "virt_ssbd", "amd_ssb_no", "cppc", "amd_psfd", "btc_no", "amd_ibpb_ret", "brs", "npt",
    "lbrv", "svm_lock", "nrip_save", "tsc_scale", "vmcb_clean", "flushbyasid", "decodeassists", "pausefilter",
    "pfthreshold", "avic", "v_vmsave_vmload", "vgif", "x2avic", "v_spec_ctrl", "vnmi", "svme_addr_chk",
    "sme", "sev", "vm_page_flush", "sev_es", "sev_snp", "v_tsc_aux", "sme_coherent", "debug_swap",
    "rmpread", "segmented_rmp", "svsm", "hv_inuse_wr_allowed", "no_nested_data_bp", "wrmsr_xx_base_ns", "lfence_rdtsc", "null_sel_clr_base",
    "autoibrs", "no_smm_ctl_msr", "sbpb", "ibpb_brtype", "srso_no", "srso_user_kernel_no", "srso_bp_spec_reduce", "smba",
    "bmec", "perfmon_v2", "amd_lbr_v2", "amd_lbr_pmc_freeze", "sgx_exinfo", "sgx_debug", "sgx_mode64", "sgx_provisionkey",
    "sgx_tokenkey", "sgx_kss", "sgx_aex_notify", "aperfmperf", "intel_ppin",
};
/* clang-format on */
#define KS_GOLDEN_N (sizeof k_golden / sizeof k_golden[0])
/* FNV-1a 64 over the first KS_GOLDEN_N names, each followed by '\n'. */
#define KS_GOLDEN_FNV UINT64_C(0x8fe9186e98f6d5ed)
#define KS_GOLDEN_COUNT 437

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static unsigned id_of(const char *name)
{
    unsigned id = 0;
    ks_err err = {0};
    ks_code rc = ks_feature_lookup(name, &id, &err);
    if (rc != KS_OK)
        fail_msg("lookup of '%s' failed: %s", name, err.msg);
    return id;
}

static unsigned id_of_arch(ks_arch arch, const char *name)
{
    unsigned id = 0;
    ks_err err = {0};
    ks_code rc = ks_feature_lookup_arch(arch, name, &id, &err);
    if (rc != KS_OK)
        fail_msg("lookup of %s '%s' failed: %s", ks_arch_to_str(arch), name, err.msg);
    return id;
}

/* Builds a set from a space-separated list of names (features or groups). */
static ks_featset set_of(const char *names)
{
    ks_featset s;
    ks_featset_clear(&s);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", names);
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        ks_err err = {0};
        if (ks_feature_add_name(&s, w, &err) != KS_OK)
            fail_msg("add_name '%s': %s", w, err.msg);
    }
    return s;
}

/* Same normalisation the catalogue promises: case-insensitive, - _ . equal. */
static void norm(char *out, size_t cap, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '-' || c == '.')
            c = '_';
        out[i] = c;
    }
    out[i] = '\0';
}

static void assert_names(const ks_featset *s, const char *names, bool expect_in)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", names);
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        bool in = ks_featset_test(s, id_of(w));
        if (in != expect_in)
            fail_msg("'%s' expected %s the set", w, expect_in ? "in" : "not in");
    }
}

/* ------------------------------------------------------------------ */
/* concurrency of the lazy index (runs first: nothing has built it yet) */
/* ------------------------------------------------------------------ */

static void *lookup_all(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        for (unsigned i = 0; i < ks_feature_count(); i++) {
            unsigned id = 0;
            if (ks_feature_lookup(ks_feature_name(i), &id, NULL) != KS_OK || id != i)
                return (void *)1;
        }
    }
    return NULL;
}

static void test_feature__concurrent_first_use(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lookup_all, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *ret = (void *)2;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
}

/* ------------------------------------------------------------------ */
/* table shape                                                          */
/* ------------------------------------------------------------------ */

static void test_feature__golden_order(void **state)
{
    (void)state;
    assert_int_equal(KS_GOLDEN_N, KS_GOLDEN_COUNT);
    assert_true(ks_feature_count() >= KS_GOLDEN_N);
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < KS_GOLDEN_N; i++) {
        if (strcmp(ks_feature_name((unsigned)i), k_golden[i]) != 0)
            fail_msg("id %zu is '%s' but was '%s': the table is append-only", i,
                     ks_feature_name((unsigned)i), k_golden[i]);
        for (const char *s = ks_feature_name((unsigned)i); *s; s++) {
            h ^= (unsigned char)*s;
            h *= UINT64_C(1099511628211);
        }
        h ^= '\n';
        h *= UINT64_C(1099511628211);
    }
    assert_true(h == KS_GOLDEN_FNV);
}

static void test_feature__fits_featset_and_counts(void **state)
{
    (void)state;
    assert_true(ks_feature_count() <= KS_FEATSET_BITS);
    size_t n_x86_cpuid = 0, n_arm = 0;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const ks_feature_info *f = ks_feature_get(i);
        assert_non_null(f);
        if (f->arch == KS_ARCH_X86_64 && f->has_cpuid)
            n_x86_cpuid++;
        if (f->arch == KS_ARCH_ARM64)
            n_arm++;
    }
    assert_true(n_x86_cpuid >= 250);
    assert_true(n_arm >= 60);
    assert_null(ks_feature_get((unsigned)ks_feature_count()));
    assert_null(ks_feature_get(100000));
    assert_string_equal(ks_feature_name((unsigned)ks_feature_count()), "?");
}

static void test_feature__entries_well_formed(void **state)
{
    (void)state;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const ks_feature_info *f = ks_feature_get(i);
        assert_non_null(f->name);
        assert_true(f->name[0] != '\0');
        for (const char *c = f->name; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                fail_msg("canonical name '%s' is not [a-z0-9_]", f->name);
        assert_non_null(f->desc);
        assert_true(f->arch == KS_ARCH_X86_64 || f->arch == KS_ARCH_ARM64);
        if (f->arch == KS_ARCH_X86_64) {
            assert_true(f->has_cpuid);
            assert_int_equal(f->hwcap_word, 0);
            assert_true(f->reg <= KS_CPUID_EDX);
            assert_true(f->bit < 32);
        } else {
            assert_false(f->has_cpuid);
            assert_true(f->hwcap_word == 1 || f->hwcap_word == 2);
            assert_true(f->hwcap_bit < 64);
            assert_null(f->qemu);
        }
    }
}

/* No two entries share a canonical, QEMU or libvirt name after normalisation. */
static void test_feature__names_unique(void **state)
{
    (void)state;
    size_t n = ks_feature_count();
    for (size_t i = 0; i < n; i++) {
        const ks_feature_info *a = ks_feature_get((unsigned)i);
        const char *an[3] = {a->name, a->qemu, a->libvirt};
        for (size_t j = i + 1; j < n; j++) {
            const ks_feature_info *b = ks_feature_get((unsigned)j);
            const char *bn[3] = {b->name, b->qemu, b->libvirt};
            for (int x = 0; x < 3; x++) {
                for (int y = 0; y < 3; y++) {
                    if (!an[x] || !bn[y])
                        continue;
                    char na[64], nb[64];
                    norm(na, sizeof na, an[x]);
                    norm(nb, sizeof nb, bn[y]);
                    if (strcmp(na, nb) == 0)
                        fail_msg("'%s' (%s) and '%s' (%s) share the name '%s'", a->name,
                                 ks_arch_to_str(a->arch), b->name, ks_arch_to_str(b->arch), na);
                }
            }
        }
    }
}

static void test_feature__round_trip_names(void **state)
{
    (void)state;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const ks_feature_info *f = ks_feature_get(i);
        assert_int_equal(id_of(f->name), i);
        assert_string_equal(ks_feature_name(id_of(f->name)), f->name);
        if (f->qemu)
            assert_int_equal(id_of(f->qemu), i);
        if (f->libvirt)
            assert_int_equal(id_of(f->libvirt), i);
        assert_int_equal(id_of_arch(f->arch, f->name), i);
        /* case and separators do not matter */
        char up[64];
        size_t k = 0;
        for (; f->name[k] && k + 1 < sizeof up; k++)
            up[k] = (f->name[k] >= 'a' && f->name[k] <= 'z') ? (char)(f->name[k] - 32)
                    : f->name[k] == '_'                      ? '-'
                                                             : f->name[k];
        up[k] = '\0';
        assert_int_equal(id_of(up), i);
    }
}

static void test_feature__cpuid_and_hwcap_unique_round_trip(void **state)
{
    (void)state;
    size_t n = ks_feature_count();
    for (size_t i = 0; i < n; i++) {
        const ks_feature_info *a = ks_feature_get((unsigned)i);
        if (a->has_cpuid) {
            int got = ks_feature_by_cpuid(a->leaf, a->subleaf, a->reg, a->bit);
            if (got != (int)i)
                fail_msg("cpuid location of '%s' maps to %d", a->name, got);
        } else {
            assert_int_equal(ks_feature_by_hwcap(a->hwcap_word, a->hwcap_bit), (int)i);
        }
        for (size_t j = i + 1; j < n; j++) {
            const ks_feature_info *b = ks_feature_get((unsigned)j);
            if (a->has_cpuid && b->has_cpuid && a->leaf == b->leaf && a->reg == b->reg &&
                a->bit == b->bit) {
                bool same_sub = a->subleaf == b->subleaf || a->subleaf == KS_CPUID_NO_SUBLEAF ||
                                b->subleaf == KS_CPUID_NO_SUBLEAF;
                if (same_sub)
                    fail_msg("'%s' and '%s' share a CPUID location", a->name, b->name);
            }
            if (a->hwcap_word && a->hwcap_word == b->hwcap_word && a->hwcap_bit == b->hwcap_bit)
                fail_msg("'%s' and '%s' share a HWCAP bit", a->name, b->name);
        }
    }
}

static void test_feature__known_locations(void **state)
{
    (void)state;
    /* spot checks against the Intel SDM / AMD APM / Linux hwcap.h */
    assert_int_equal(ks_feature_by_cpuid(1, 0, KS_CPUID_ECX, 28), (int)id_of("avx"));
    assert_int_equal(ks_feature_by_cpuid(1, 12345, KS_CPUID_ECX, 28), (int)id_of("avx"));
    assert_int_equal(ks_feature_by_cpuid(1, 0, KS_CPUID_EDX, 26), (int)id_of("sse2"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_EBX, 5), (int)id_of("avx2"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_EBX, 16), (int)id_of("avx512f"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_EBX, 29), (int)id_of("sha_ni"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_ECX, 9), (int)id_of("vaes"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_EDX, 24), (int)id_of("amx_tile"));
    assert_int_equal(ks_feature_by_cpuid(7, 1, KS_CPUID_EAX, 4), (int)id_of("avx_vnni"));
    assert_int_equal(ks_feature_by_cpuid(0xd, 1, KS_CPUID_EAX, 0), (int)id_of("xsaveopt"));
    assert_int_equal(ks_feature_by_cpuid(0x80000001, 0, KS_CPUID_EDX, 29), (int)id_of("lm"));
    assert_int_equal(ks_feature_by_cpuid(0x80000001, 0, KS_CPUID_ECX, 5), (int)id_of("abm"));
    assert_int_equal(ks_feature_by_cpuid(7, 0, KS_CPUID_EAX, 4), -1); /* wrong subleaf */
    assert_int_equal(ks_feature_by_cpuid(7, 1, KS_CPUID_EBX, 5), -1);
    assert_int_equal(ks_feature_by_cpuid(0xd, 0, KS_CPUID_EAX, 0), -1);
    assert_int_equal(ks_feature_by_cpuid(1, 0, KS_CPUID_EDX, 10), -1); /* reserved */
    assert_int_equal(ks_feature_by_hwcap(1, 0), (int)id_of("fp"));
    assert_int_equal(ks_feature_by_hwcap(1, 1), (int)id_of("asimd"));
    assert_int_equal(ks_feature_by_hwcap(1, 3), (int)id_of_arch(KS_ARCH_ARM64, "aes"));
    assert_int_equal(ks_feature_by_hwcap(1, 22), (int)id_of("sve"));
    assert_int_equal(ks_feature_by_hwcap(2, 1), (int)id_of("sve2"));
    assert_int_equal(ks_feature_by_hwcap(2, 13), (int)id_of("i8mm"));
    assert_int_equal(ks_feature_by_hwcap(2, 14), (int)id_of("bf16"));
    assert_int_equal(ks_feature_by_hwcap(0, 0), -1);
    assert_int_equal(ks_feature_by_hwcap(3, 0), -1);
}

static void test_feature__depends_resolve_without_cycles(void **state)
{
    (void)state;
    size_t n = ks_feature_count();
    for (size_t i = 0; i < n; i++) {
        const ks_feature_info *f = ks_feature_get((unsigned)i);
        if (!f->depends)
            continue;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", f->depends);
        char *save = NULL;
        for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            unsigned d = 0;
            if (ks_feature_lookup(w, &d, NULL) != KS_OK)
                fail_msg("'%s' depends on unknown '%s'", f->name, w);
            assert_string_equal(ks_feature_name(d), w); /* canonical spelling */
            assert_int_equal(ks_feature_get(d)->arch, f->arch);
            assert_int_not_equal(d, i);
        }
    }
    /* No cycle: a feature is never among the dependents of its own dependents
     * except itself, i.e. closure({i}) minus i never reaches back to i's deps
     * through i.  Equivalent check: for each i, i is not in closure(deps(i)) unless
     * it depends on nothing, which holds iff the graph is acyclic. */
    for (size_t i = 0; i < n; i++) {
        const ks_feature_info *f = ks_feature_get((unsigned)i);
        if (!f->depends)
            continue;
        ks_featset one, clo;
        ks_featset_clear(&one);
        ks_featset_set(&one, (unsigned)i);
        ks_feature_dependents_closure(&clo, &one);
        char buf[256];
        snprintf(buf, sizeof buf, "%s", f->depends);
        char *save = NULL;
        for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
            if (ks_featset_test(&clo, id_of(w)))
                fail_msg("dependency cycle through '%s' and '%s'", f->name, w);
    }
}

/* Every QEMU name is a -cpu property the installed QEMU (7.2 in our images)
 * accepts: QEMU refuses to start on an unknown one. */
static void test_feature__qemu_names_exist_in_installed_qemu(void **state)
{
    (void)state;
    FILE *p = popen("qemu-system-x86_64 -cpu help 2>/dev/null", "r");
    if (p == NULL)
        skip();
    static char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, p);
    text[len] = '\0';
    pclose(p);
    char *flags = strstr(text, "Recognized CPUID flags:");
    if (flags == NULL)
        skip(); /* no QEMU here */
    size_t n_checked = 0;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const char *q = ks_feature_get(i)->qemu;
        if (q == NULL)
            continue;
        char word[80];
        snprintf(word, sizeof word, " %s\n", q);
        char word2[80];
        snprintf(word2, sizeof word2, " %s ", q);
        if (!strstr(flags, word) && !strstr(flags, word2))
            fail_msg("QEMU does not know '%s' (feature '%s')", q, ks_feature_name(i));
        n_checked++;
    }
    assert_true(n_checked >= 180);
}

/* Every libvirt name is a feature of the installed libvirt cpu_map. */
static void test_feature__libvirt_names_exist_in_cpu_map(void **state)
{
    (void)state;
    FILE *f = fopen("/usr/share/libvirt/cpu_map/x86_features.xml", "r");
    if (f == NULL)
        skip();
    static char text[262144];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    size_t n_checked = 0;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const char *l = ks_feature_get(i)->libvirt;
        if (l == NULL)
            continue;
        char pat[96];
        snprintf(pat, sizeof pat, "<feature name='%s'", l);
        if (!strstr(text, pat))
            fail_msg("libvirt cpu_map has no '%s' (feature '%s')", l, ks_feature_name(i));
        n_checked++;
    }
    assert_true(n_checked >= 180);
}

/* ------------------------------------------------------------------ */
/* lookups                                                              */
/* ------------------------------------------------------------------ */

static void test_feature__qemu_and_libvirt_names(void **state)
{
    (void)state;
    static const struct {
        const char *alias, *canonical;
    } cases[] = {
        {"sse4.2", "sse4_2"},
        {"sse4.1", "sse4_1"},
        {"sse4-1", "sse4_1"},
        {"pni", "pni"},
        {"sse3", "pni"},
        {"pclmuldq", "pclmulqdq"},
        {"tsc-deadline", "tsc_deadline_timer"},
        {"ds", "dts"},
        {"ds-cpl", "ds_cpl"},
        {"xd", "nx"},
        {"i64", "lm"},
        {"fxsr-opt", "fxsr_opt"},
        {"ffxsr", "fxsr_opt"},
        {"lahf-lm", "lahf_lm"},
        {"cr8legacy", "cr8_legacy"},
        {"lzcnt", "abm"},
        {"sha-ni", "sha_ni"},
        {"tsc-adjust", "tsc_adjust"},
        {"intel-pt", "intel_pt"},
        {"cmt", "cqm"},
        {"avx512vbmi2", "avx512_vbmi2"},
        {"avx512vnni", "avx512_vnni"},
        {"avx512bitalg", "avx512_bitalg"},
        {"avx512-vpopcntdq", "avx512_vpopcntdq"},
        {"avx512-4vnniw", "avx512_4vnniw"},
        {"avx512-fp16", "avx512_fp16"},
        {"avx512-bf16", "avx512_bf16"},
        {"avx-vnni", "avx_vnni"},
        {"amx-tile", "amx_tile"},
        {"amx-bf16", "amx_bf16"},
        {"md-clear", "md_clear"},
        {"stibp", "intel_stibp"},
        {"ssbd", "spec_ctrl_ssbd"},
        {"ibpb", "amd_ibpb"},
        {"amd-no-ssb", "amd_ssb_no"},
        {"core-capability", "core_capabilities"},
        {"sgxlc", "sgx_lc"},
        {"xstore", "rng"},
        {"xcrypt-en", "ace_en"},
        {"svm-lock", "svm_lock"},
        {"pause-filter", "pausefilter"},
        {"auto-ibrs", "autoibrs"},
        {"mbm_total", "cqm_mbm_total"},
        {"lfence-always-serializing", "lfence_rdtsc"},
        {"AVX512F", "avx512f"},
        {"Sse4_2", "sse4_2"},
        {"AMX.TILE", "amx_tile"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned id = 0;
        ks_err err = {0};
        if (ks_feature_lookup(cases[i].alias, &id, &err) != KS_OK)
            fail_msg("'%s': %s", cases[i].alias, err.msg);
        if (strcmp(ks_feature_name(id), cases[i].canonical) != 0)
            fail_msg("'%s' gave '%s', expected '%s'", cases[i].alias, ks_feature_name(id),
                     cases[i].canonical);
    }
    /* the QEMU spelling stored for the table's most used rows */
    assert_string_equal(ks_feature_get(id_of("sse4_2"))->qemu, "sse4.2");
    assert_string_equal(ks_feature_get(id_of("pni"))->qemu, "pni");
    assert_string_equal(ks_feature_get(id_of("avx512_vnni"))->qemu, "avx512vnni");
    assert_string_equal(ks_feature_get(id_of("pclmulqdq"))->libvirt, "pclmuldq");
    assert_null(ks_feature_get(id_of("osxsave"))->qemu);
}

static void test_feature__unknown_name_errors(void **state)
{
    (void)state;
    unsigned id = 77;
    ks_err err = {0};
    assert_int_equal(ks_feature_lookup("avx513", &id, &err), KS_EINVAL);
    assert_int_equal(err.code, KS_EINVAL);
    assert_non_null(strstr(err.msg, "'avx513'"));
    assert_int_equal(id, 77); /* out-param untouched on failure */
    assert_int_equal(ks_feature_lookup("avx513", &id, NULL), KS_EINVAL);
    assert_int_equal(ks_feature_lookup("", &id, &err), KS_EINVAL);
    assert_int_equal(ks_feature_lookup(NULL, &id, &err), KS_EINVAL);
    assert_int_equal(ks_feature_lookup("avx2 ", &id, &err), KS_EINVAL);
    assert_int_equal(ks_feature_lookup("group:avx512", &id, &err), KS_EINVAL);
    assert_int_equal(ks_feature_lookup("\x01"
                                       "bad\nname",
                                       &id, &err),
                     KS_EINVAL);
    assert_null(strchr(err.msg, '\n'));
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(ks_feature_lookup(longname, &id, &err), KS_EINVAL);
    assert_true(strlen(err.msg) < sizeof err.msg);
    /* arch-aware lookups refuse the other arch's features */
    assert_int_equal(ks_feature_lookup_arch(KS_ARCH_ARM64, "avx2", &id, &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "'avx2'"));
    assert_int_equal(ks_feature_lookup_arch(KS_ARCH_X86_64, "sve", &id, &err), KS_EINVAL);
    ks_featset s;
    ks_featset_clear(&s);
    assert_int_equal(ks_feature_add_name(&s, "avx513", &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "'avx513'"));
    assert_int_equal(ks_feature_add_name(&s, "group:nope", &err), KS_EINVAL);
    assert_non_null(strstr(err.msg, "nope"));
    assert_int_equal(ks_feature_add_name(&s, NULL, &err), KS_EINVAL);
    assert_true(ks_featset_empty(&s));
}

static void test_feature__cross_arch_names(void **state)
{
    (void)state;
    /* words that are both an x86 flag and an arm64 HWCAP */
    static const char *const both[] = {"aes", "sha512", "sm3", "sm4", "rng", "sme"};
    for (size_t i = 0; i < sizeof both / sizeof both[0]; i++) {
        unsigned x = id_of_arch(KS_ARCH_X86_64, both[i]);
        unsigned a = id_of_arch(KS_ARCH_ARM64, both[i]);
        assert_int_not_equal(x, a);
        assert_int_equal(ks_feature_get(x)->arch, KS_ARCH_X86_64);
        assert_int_equal(ks_feature_get(a)->arch, KS_ARCH_ARM64);
        assert_int_equal(id_of(both[i]), x); /* arch-less lookup means x86 */
        char pre[32];
        snprintf(pre, sizeof pre, "arm64_%s", both[i]);
        assert_int_equal(id_of(pre), a);
    }
}

/* ------------------------------------------------------------------ */
/* groups                                                               */
/* ------------------------------------------------------------------ */

static void test_feature__groups_well_formed(void **state)
{
    (void)state;
    size_t n = ks_feature_group_count();
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        const char *name = ks_feature_group_name(i);
        for (const char *c = name; *c; c++)
            assert_false(*c >= 'A' && *c <= 'Z');
        assert_int_equal(ks_feature_group_find(name), (int)i);
        ks_featset m;
        ks_featset_clear(&m);
        ks_feature_group_members(i, &m);
        if (ks_featset_empty(&m))
            fail_msg("group '%s' is empty", name);
        /* every member of one arch */
        int arch = -1;
        for (int b = ks_featset_next(&m, 0); b >= 0; b = ks_featset_next(&m, (unsigned)b + 1)) {
            if (arch < 0)
                arch = (int)ks_feature_get((unsigned)b)->arch;
            assert_int_equal((int)ks_feature_get((unsigned)b)->arch, arch);
        }
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(name, ks_feature_group_name(j));
    }
    assert_string_equal(ks_feature_group_name(n), "?");
    assert_int_equal(ks_feature_group_find("nope"), -1);
    assert_int_equal(ks_feature_group_find(NULL), -1);
    assert_true(ks_feature_group_find("AVX512") >= 0);
    /* members are ORed in, the set is not cleared */
    ks_featset m;
    ks_featset_clear(&m);
    ks_featset_set(&m, id_of("fpu"));
    ks_feature_group_members((size_t)ks_feature_group_find("amx"), &m);
    assert_true(ks_featset_test(&m, id_of("fpu")));
    assert_true(ks_featset_test(&m, id_of("amx_int8")));
}

/* The group of every canonical name of `arch` starting with `prefix`. */
static ks_featset by_prefix(ks_arch arch, const char *prefix)
{
    ks_featset s;
    ks_featset_clear(&s);
    for (unsigned i = 0; i < ks_feature_count(); i++)
        if (ks_feature_get(i)->arch == arch &&
            strncmp(ks_feature_name(i), prefix, strlen(prefix)) == 0)
            ks_featset_set(&s, i);
    return s;
}

static void test_feature__group_members(void **state)
{
    (void)state;
    ks_featset g = set_of("avx512");
    ks_featset want = by_prefix(KS_ARCH_X86_64, "avx512");
    assert_true(ks_featset_equal(&g, &want));
    assert_true(ks_featset_popcount(&g) >= 18);

    g = set_of("amx");
    want = by_prefix(KS_ARCH_X86_64, "amx_");
    assert_true(ks_featset_equal(&g, &want));

    g = set_of("group:sve");
    want = by_prefix(KS_ARCH_ARM64, "sve");
    assert_true(ks_featset_equal(&g, &want));

    /* a name that is both a feature and a group means the feature */
    g = set_of("aes");
    assert_int_equal(ks_featset_popcount(&g), 1);
    g = set_of("group:aes");
    want = set_of("aes vaes");
    assert_true(ks_featset_equal(&g, &want));
    g = set_of("sse");
    assert_int_equal(ks_featset_popcount(&g), 1);
    g = set_of("group:sse");
    want = set_of("sse sse2 pni ssse3 sse4_1 sse4_2");
    assert_true(ks_featset_equal(&g, &want));

    g = set_of("bmi");
    want = set_of("bmi1 bmi2");
    assert_true(ks_featset_equal(&g, &want));
    g = set_of("vnni");
    assert_names(&g, "avx512_vnni avx_vnni", true);
    g = set_of("sha");
    assert_names(&g, "sha_ni sha512", true);
    g = set_of("avx-family");
    want = set_of("avx avx2 fma f16c");
    assert_true(ks_featset_equal(&g, &want));
    g = set_of("crypto");
    assert_names(&g, "aes pclmulqdq sha_ni vaes vpclmulqdq gfni", true);
    assert_names(&g, "avx2", false);
    g = set_of("x86-64-v4");
    assert_names(&g, "avx512f avx512bw avx512cd avx512dq avx512vl", true);

    /* arm64 spelling through the arch-aware call */
    ks_featset a;
    ks_featset_clear(&a);
    assert_int_equal(ks_feature_add_name_arch(&a, KS_ARCH_ARM64, "crypto", NULL), KS_OK);
    assert_true(ks_featset_test(&a, id_of_arch(KS_ARCH_ARM64, "aes")));
    assert_true(ks_featset_test(&a, id_of("pmull")));
    assert_true(ks_featset_test(&a, id_of("sha1")));
    assert_true(ks_featset_test(&a, id_of("sha2")));
    assert_false(ks_featset_test(&a, id_of("aes")));
    ks_featset_clear(&a);
    assert_int_equal(ks_feature_add_name_arch(&a, KS_ARCH_X86_64, "crypto", NULL), KS_OK);
    assert_true(ks_featset_test(&a, id_of("aes")));
    ks_featset_clear(&a);
    assert_int_equal(ks_feature_add_name_arch(&a, KS_ARCH_ARM64, "aes", NULL), KS_OK);
    assert_int_equal(ks_featset_popcount(&a), 1);
    assert_true(ks_featset_test(&a, id_of("arm64_aes")));
    assert_int_equal(ks_feature_add_name_arch(&a, KS_ARCH_ARM64, "avx512", NULL), KS_EINVAL);
    assert_int_equal(ks_feature_add_name_arch(&a, KS_ARCH_ARM64, "group:sve", NULL), KS_OK);
    assert_true(ks_featset_test(&a, id_of("sve2")));
}

/* ------------------------------------------------------------------ */
/* dependency closure                                                   */
/* ------------------------------------------------------------------ */

static void test_feature__closure_table(void **state)
{
    (void)state;
    static const struct {
        const char *faulty, *gone, *kept;
    } cases[] = {
        {"avx",
         "avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni vaes vpclmulqdq avx_vnni "
         "avx512_fp16 avx_ifma avx10",
         "sse4_2 aes pclmulqdq amx_tile xsave bmi1"},
        {"avx2", "avx512f avx512dq avx_vnni avx_vnni_int8", "avx fma f16c vaes"},
        {"avx512f", "group:avx512", "avx avx2 fma vaes avx_vnni"},
        {"aes", "vaes", "avx pclmulqdq vpclmulqdq sha_ni"},
        {"pclmulqdq", "vpclmulqdq", "aes vaes avx"},
        {"sse2", "pni ssse3 sse4_1 sse4_2 avx avx2 avx512f aes pclmulqdq sha_ni gfni f16c",
         "sse fxsr mmx fpu"},
        {"xsave", "avx xsaveopt xsaves xfd amx_tile amx_int8 avx512f pku", "sse2 aes"},
        {"amx_tile", "amx_bf16 amx_int8 amx_fp16 amx_complex", "avx512f avx2"},
        {"fpu", "fxsr sse sse2 mmx cmov avx avx512f", "tsc lm"},
        {"sve", "sve2 sveaes svei8mm svebf16 sve2p1", "asimd fp i8mm bf16"},
        {"asimd", "sve sve2 pmull sha1 sha2 arm64_aes i8mm", "fp crc32 atomics"},
        {"sgx", "sgx_lc sgx1 sgx2", "smx"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ks_featset faulty = set_of(cases[i].faulty), out;
        ks_feature_dependents_closure(&out, &faulty);
        ks_featset gone = set_of(cases[i].gone), kept = set_of(cases[i].kept);
        if (!ks_featset_subset(&gone, &out))
            fail_msg("faulty %s: not all of '%s' removed", cases[i].faulty, cases[i].gone);
        if (ks_featset_intersects(&kept, &out))
            fail_msg("faulty %s: something of '%s' removed", cases[i].faulty, cases[i].kept);
        assert_true(ks_featset_subset(&faulty, &out));
        /* idempotent */
        ks_featset again;
        ks_feature_dependents_closure(&again, &out);
        assert_true(ks_featset_equal(&again, &out));
        /* never crosses arches */
        ks_featset arch_all;
        ks_arch a = ks_feature_get((unsigned)ks_featset_next(&faulty, 0))->arch;
        ks_feature_all_of_arch(a, &arch_all);
        assert_true(ks_featset_subset(&out, &arch_all));
    }
    ks_featset none, out;
    ks_featset_clear(&none);
    ks_feature_dependents_closure(&out, &none);
    assert_true(ks_featset_empty(&out));
    /* output may alias input */
    ks_featset x = set_of("aes");
    ks_feature_dependents_closure(&x, &x);
    assert_true(ks_featset_test(&x, id_of("vaes")));
}

static void test_feature__base_isa_and_arches(void **state)
{
    (void)state;
    ks_featset base;
    ks_feature_base_isa(KS_ARCH_X86_64, &base);
    assert_names(&base, "fpu tsc cx8 cmov mmx fxsr sse sse2 syscall lm nx pae pse apic clflush",
                 true);
    assert_names(&base, "avx pni ssse3 aes", false);
    ks_featset x86, arm;
    ks_feature_all_of_arch(KS_ARCH_X86_64, &x86);
    ks_feature_all_of_arch(KS_ARCH_ARM64, &arm);
    assert_true(ks_featset_subset(&base, &x86));
    assert_false(ks_featset_intersects(&x86, &arm));
    assert_int_equal(ks_featset_popcount(&x86) + ks_featset_popcount(&arm), ks_feature_count());

    ks_feature_base_isa(KS_ARCH_ARM64, &base);
    ks_featset want = set_of("fp asimd");
    assert_true(ks_featset_equal(&base, &want));
    ks_feature_base_isa(KS_ARCH__COUNT, &base);
    assert_true(ks_featset_empty(&base));

    assert_string_equal(ks_arch_to_str(KS_ARCH_X86_64), "x86_64");
    assert_string_equal(ks_arch_to_str(KS_ARCH_ARM64), "aarch64");
    assert_int_equal(ks_arch_from_str("x86_64"), KS_ARCH_X86_64);
    assert_int_equal(ks_arch_from_str("amd64"), KS_ARCH_X86_64);
    assert_int_equal(ks_arch_from_str("x86"), KS_ARCH_X86_64);
    assert_int_equal(ks_arch_from_str("AArch64"), KS_ARCH_ARM64);
    assert_int_equal(ks_arch_from_str("arm64"), KS_ARCH_ARM64);
    assert_int_equal(ks_arch_from_str("riscv64"), -1);
    assert_int_equal(ks_arch_from_str(""), -1);
    assert_int_equal(ks_arch_from_str(NULL), -1);
}

/* ------------------------------------------------------------------ */
/* CPUID decoding                                                       */
/* ------------------------------------------------------------------ */

typedef struct fake_leaf {
    uint32_t leaf, subleaf; /* subleaf UINT32_MAX: any */
    uint32_t r[4];
} fake_leaf;

typedef struct fake_cpu {
    const fake_leaf *leaves;
    size_t n;
    uint32_t fail_leaf; /* this leaf returns false (0: none) */
    unsigned calls;
} fake_cpu;

/* Like a real Intel part: a leaf above the maximum returns junk (here all ones). */
static bool fake_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    fake_cpu *c = ctx;
    c->calls++;
    if (c->fail_leaf && leaf == c->fail_leaf)
        return false;
    for (size_t i = 0; i < c->n; i++) {
        if (c->leaves[i].leaf == leaf &&
            (c->leaves[i].subleaf == UINT32_MAX || c->leaves[i].subleaf == subleaf)) {
            memcpy(regs, c->leaves[i].r, sizeof c->leaves[i].r);
            return true;
        }
    }
    uint32_t max_basic = 0, max_ext = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->leaves[i].leaf == 0)
            max_basic = c->leaves[i].r[0];
        if (c->leaves[i].leaf == 0x80000000u)
            max_ext = c->leaves[i].r[0];
    }
    bool in_range = (leaf < 0x80000000u && leaf <= max_basic) ||
                    (leaf >= 0x80000000u && leaf < 0xc0000000u && leaf <= max_ext);
    for (int i = 0; i < 4; i++)
        regs[i] = in_range ? 0 : 0xffffffffu;
    return true;
}

#define B(n) (UINT32_C(1) << (n))

static ks_featset decode(const fake_leaf *leaves, size_t n, uint32_t fail_leaf)
{
    fake_cpu c = {leaves, n, fail_leaf, 0};
    ks_featset out;
    memset(&out, 0xff, sizeof out); /* the decoder must clear it */
    ks_feature_decode_cpuid(&out, fake_cpuid, &c);
    assert_true(c.calls > 0 && c.calls < 200); /* each leaf asked about once */
    return out;
}

static void test_feature__decode_max_leaf(void **state)
{
    (void)state;
    /* max basic leaf 1: leaf 7 answers junk and must be ignored */
    const fake_leaf old_cpu[] = {
        {0, UINT32_MAX, {1, 0, 0, 0}},
        {1, UINT32_MAX, {0, 0, B(0) | B(20), B(0) | B(25) | B(26)}},
        {0x80000000u, UINT32_MAX, {0x80000001u, 0, 0, 0}},
        {0x80000001u, UINT32_MAX, {0, 0, 0, B(11) | B(20) | B(29)}},
    };
    ks_featset got = decode(old_cpu, sizeof old_cpu / sizeof old_cpu[0], 0);
    ks_featset want = set_of("pni sse4_2 fpu sse sse2 syscall nx lm");
    assert_true(ks_featset_equal(&got, &want));

    /* no extended leaves at all (0x80000000 answers junk) */
    const fake_leaf no_ext[] = {
        {0, UINT32_MAX, {1, 0, 0, 0}},
        {1, UINT32_MAX, {0, 0, 0, B(0)}},
    };
    got = decode(no_ext, 2, 0);
    want = set_of("fpu");
    assert_true(ks_featset_equal(&got, &want));

    /* max extended leaf 0x80000000: 0x80000001 is absent */
    const fake_leaf ext0[] = {
        {0, UINT32_MAX, {1, 0, 0, 0}},
        {0x80000000u, UINT32_MAX, {0x80000000u, 0, 0, 0}},
        {0x80000001u, UINT32_MAX, {0, 0, 0xffffffffu, 0xffffffffu}},
    };
    got = decode(ext0, 3, 0);
    assert_true(ks_featset_empty(&got));
}

static void test_feature__decode_subleaves(void **state)
{
    (void)state;
    const fake_leaf cpu[] = {
        {0, UINT32_MAX, {0xd, 0, 0, 0}},
        {1, UINT32_MAX, {0, 0, B(26) | B(28), 0}},
        /* 7.0: eax = max subleaf 1 */
        {7, 0, {1, B(3) | B(5), B(9), B(24)}},
        {7, 1, {B(4), 0, 0, 0}},
        {7, 2, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},   /* above max subleaf */
        {0xd, 0, {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, /* XCR0 bits, no features */
        {0xd, 1, {B(0) | B(3), 0, 0, 0}},
        {0x80000000u, UINT32_MAX, {0x80000008u, 0, 0, 0}},
    };
    ks_featset got = decode(cpu, sizeof cpu / sizeof cpu[0], 0);
    ks_featset want = set_of("xsave avx bmi1 avx2 vaes amx_tile avx_vnni xsaveopt xsaves");
    if (!ks_featset_equal(&got, &want)) {
        for (int b = ks_featset_next(&got, 0); b >= 0; b = ks_featset_next(&got, (unsigned)b + 1))
            print_message("got %s\n", ks_feature_name((unsigned)b));
        fail();
    }

    /* 7.0 eax = 0: subleaf 1 does not exist even if the CPU answers */
    const fake_leaf cpu2[] = {
        {0, UINT32_MAX, {7, 0, 0, 0}},
        {7, 0, {0, B(5), 0, 0}},
        {7, 1, {B(4), 0, 0, 0}},
    };
    got = decode(cpu2, 3, 0);
    want = set_of("avx2");
    assert_true(ks_featset_equal(&got, &want));

    /* an oracle that cannot read a leaf: its features are absent */
    got = decode(cpu, sizeof cpu / sizeof cpu[0], 7);
    want = set_of("xsave avx xsaveopt xsaves");
    assert_true(ks_featset_equal(&got, &want));

    /* no oracle */
    ks_feature_decode_cpuid(&got, NULL, NULL);
    assert_true(ks_featset_empty(&got));
}

/* An oracle that reports every leaf in range and exactly one feature bit. */
typedef struct one_bit_cpu {
    const ks_feature_info *f;
} one_bit_cpu;

static bool one_bit_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    one_bit_cpu *c = ctx;
    regs[0] = regs[1] = regs[2] = regs[3] = 0;
    if (leaf == 0)
        regs[0] = 0x24;
    else if (leaf == 0x80000000u)
        regs[0] = 0x80000022u;
    else if (leaf == 0xc0000000u)
        regs[0] = 0xc0000001u;
    else if (leaf == 7 && subleaf == 0)
        regs[0] = 2;
    else if ((leaf == 0x14 || leaf == 0x24) && subleaf == 0)
        regs[0] = 1;
    if (leaf == c->f->leaf && (c->f->subleaf == KS_CPUID_NO_SUBLEAF || subleaf == c->f->subleaf))
        regs[c->f->reg] |= UINT32_C(1) << c->f->bit;
    return true;
}

static void test_feature__decode_every_entry(void **state)
{
    (void)state;
    for (unsigned i = 0; i < ks_feature_count(); i++) {
        const ks_feature_info *f = ks_feature_get(i);
        if (!f->has_cpuid)
            continue;
        one_bit_cpu c = {f};
        ks_featset got;
        ks_feature_decode_cpuid(&got, one_bit_cpuid, &c);
        if (ks_featset_popcount(&got) != 1 || !ks_featset_test(&got, i))
            fail_msg("decoding only '%s' gave %u features (first '%s')", f->name,
                     ks_featset_popcount(&got),
                     ks_feature_name((unsigned)ks_featset_next(&got, 0)));
    }
}

/* A recorded CPUID dump (hwloc's format, fixtures/hwloc-x86): lines
 * "mask eax ebx ecx edx => eax ebx ecx edx"; mask bit 2 says ecx was an input. */
typedef struct dump_line {
    uint32_t mask, in[4], out[4];
} dump_line;

typedef struct dump_cpu {
    dump_line lines[512];
    size_t n;
} dump_cpu;

static bool dump_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    const dump_cpu *d = ctx;
    for (size_t i = 0; i < d->n; i++) {
        const dump_line *l = &d->lines[i];
        if (l->in[0] == leaf && (!(l->mask & 4) || l->in[2] == subleaf)) {
            memcpy(regs, l->out, sizeof l->out);
            return true;
        }
    }
    return false; /* not recorded: as if the leaf were absent */
}

/* Unpacks NAME/pu0 of fixtures/hwloc-x86/NAME.tar.bz2 and decodes it. */
static bool decode_fixture(const char *name, ks_featset *out)
{
    char tar[1024], dir[256], cmd[2400], pu0[1400];
    ks_test_path(tar, sizeof tar, "%s/hwloc-x86/%s.tar.bz2", ks_test_fixtures_dir(), name);
    if (access(tar, R_OK) != 0)
        return false;
    ks_test_mkdtemp(dir, sizeof dir);
    ks_test_path(cmd, sizeof cmd, "tar -xjf '%s' -C '%s' '%s/pu0'", tar, dir, name);
    assert_int_equal(system(cmd), 0);
    ks_test_path(pu0, sizeof pu0, "%s/%s/pu0", dir, name);
    FILE *f = fopen(pu0, "r");
    assert_non_null(f);
    static dump_cpu d;
    d.n = 0;
    char line[256];
    while (fgets(line, sizeof line, f) && d.n < sizeof d.lines / sizeof d.lines[0]) {
        dump_line *l = &d.lines[d.n];
        if (sscanf(line, "%x %x %x %x %x => %x %x %x %x", &l->mask, &l->in[0], &l->in[1], &l->in[2],
                   &l->in[3], &l->out[0], &l->out[1], &l->out[2], &l->out[3]) == 9)
            d.n++;
    }
    fclose(f);
    ks_test_rmdir(dir);
    assert_true(d.n > 10);
    ks_feature_decode_cpuid(out, dump_cpuid, &d);
    return true;
}

static void test_feature__decode_recorded_cpus(void **state)
{
    (void)state;
    static const struct {
        const char *fixture, *has, *lacks;
    } cases[] = {
        {"Intel-Haswell-2xXeon-E5-2680v3",
         "fpu sse2 pni ssse3 sse4_2 popcnt aes pclmulqdq avx avx2 fma f16c bmi1 bmi2 movbe abm "
         "rdrand xsaveopt lm nx pdpe1gb invtsc",
         "avx512f sha_ni vaes adx rdseed amx_tile sse4a"},
        {"Intel-Skylake-2xXeon6140",
         "avx2 avx512f avx512bw avx512dq avx512vl avx512cd adx rdseed clflushopt clwb xsavec",
         "avx512_vnni avx512_bf16 amx_tile avx_vnni sha_ni"},
        {"Intel-CascadeLake-2xXeon6230", "avx512f avx512_vnni avx512vl",
         "avx512_bf16 amx_tile avx512_fp16 vaes"},
        {"Intel-SapphireRapids-2xXeonMax9460",
         "avx512f avx512_fp16 avx512_bf16 avx512_vnni avx_vnni amx_tile amx_bf16 amx_int8 vaes "
         "vpclmulqdq gfni sha_ni serialize tsxldtrk movdiri movdir64b enqcmd la57 xfd",
         "avx10 sme sse4a avx512er amx_fp16"},
        {"Intel-RaptorLake-Corei7-1370P",
         "avx2 avx_vnni hybrid_cpu sha_ni gfni vaes vpclmulqdq serialize movdiri waitpkg",
         "avx512f avx512bw amx_tile"},
        {"AMD-19h-Zen3-2xEpyc-7763",
         "avx2 fma vaes vpclmulqdq sha_ni clzero svm npt sse4a abm topoext rdpru wbnoinvd",
         "avx512f fma4 xop amx_tile hle"},
        {"Hygon-Dhyana-32cores", "avx2 fma svm sse4a clzero adx smap clflushopt",
         "avx512f vaes sha_ni rdseed"},
        {"Intel-KnightsLanding-XeonPhi-7210", "avx512f avx512pf avx512er avx512cd",
         "avx512bw avx512vl avx512dq"},
    };
    size_t n_decoded = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ks_featset got;
        if (!decode_fixture(cases[i].fixture, &got))
            continue;
        n_decoded++;
        ks_featset has = set_of(cases[i].has), lacks = set_of(cases[i].lacks);
        ks_featset missing;
        ks_featset_andnot(&missing, &has, &got);
        if (!ks_featset_empty(&missing))
            fail_msg("%s: '%s' not decoded", cases[i].fixture,
                     ks_feature_name((unsigned)ks_featset_next(&missing, 0)));
        if (ks_featset_intersects(&lacks, &got)) {
            ks_featset_and(&missing, &lacks, &got);
            fail_msg("%s: '%s' decoded but absent", cases[i].fixture,
                     ks_feature_name((unsigned)ks_featset_next(&missing, 0)));
        }
        /* Real CPUs satisfy the catalogue's dependencies: every decoded feature
         * has everything it depends on, so removing nothing removes nothing. */
        ks_featset base;
        ks_feature_base_isa(KS_ARCH_X86_64, &base);
        assert_true(ks_featset_subset(&base, &got));
        for (int b = ks_featset_next(&got, 0); b >= 0; b = ks_featset_next(&got, (unsigned)b + 1)) {
            const ks_feature_info *f = ks_feature_get((unsigned)b);
            if (!f->depends)
                continue;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", f->depends);
            char *save = NULL;
            for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
                if (!ks_featset_test(&got, id_of(w)))
                    fail_msg("%s has '%s' without '%s' it depends on", cases[i].fixture, f->name,
                             w);
        }
    }
    if (n_decoded == 0)
        skip(); /* no fixtures on this machine */
}

/* ------------------------------------------------------------------ */
/* /proc/cpuinfo                                                        */
/* ------------------------------------------------------------------ */

static void test_feature__from_cpuinfo(void **state)
{
    (void)state;
    size_t unknown = 99;
    ks_featset got;
    ks_feature_from_cpuinfo(&got, KS_ARCH_X86_64,
                            "fpu vme de pse tsc\tmsr sse sse2 constant_tsc rep_good pni "
                            "avx2 avx512f avx512_vnni sha_ni aes ibpb  \n",
                            &unknown);
    ks_featset want =
        set_of("fpu vme de pse tsc msr sse sse2 pni avx2 avx512f avx512_vnni sha_ni aes");
    assert_true(ks_featset_equal(&got, &want));
    /* constant_tsc, rep_good: synthetic; ibpb: synthetic (a QEMU name, not a flag) */
    assert_int_equal(unknown, 3);

    /* QEMU/libvirt spellings are not /proc/cpuinfo flags (separators still fold) */
    ks_feature_from_cpuinfo(&got, KS_ARCH_X86_64, "pclmuldq sse4.2 sse4_2", &unknown);
    want = set_of("sse4_2");
    assert_true(ks_featset_equal(&got, &want));
    assert_int_equal(unknown, 1);

    /* arm64: the plain words map to the arm64 rows */
    ks_feature_from_cpuinfo(&got, KS_ARCH_ARM64,
                            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sha512 sve "
                            "sve2 i8mm bf16 sme wibble",
                            &unknown);
    want = set_of("fp asimd evtstrm arm64_aes pmull sha1 sha2 crc32 atomics arm64_sha512 sve "
                  "sve2 i8mm bf16 arm64_sme");
    assert_true(ks_featset_equal(&got, &want));
    assert_int_equal(unknown, 1);

    /* x86 words on arm64 are unknown */
    ks_feature_from_cpuinfo(&got, KS_ARCH_ARM64, "avx2 sse", &unknown);
    assert_true(ks_featset_empty(&got));
    assert_int_equal(unknown, 2);

    ks_feature_from_cpuinfo(&got, KS_ARCH_X86_64, "", &unknown);
    assert_true(ks_featset_empty(&got));
    assert_int_equal(unknown, 0);
    ks_feature_from_cpuinfo(&got, KS_ARCH_X86_64, NULL, NULL);
    assert_true(ks_featset_empty(&got));
    char longword[200];
    memset(longword, 'x', sizeof longword - 1);
    longword[sizeof longword - 1] = '\0';
    ks_feature_from_cpuinfo(&got, KS_ARCH_X86_64, longword, &unknown);
    assert_int_equal(unknown, 1);
}

/* Printing every feature of an arch as /proc/cpuinfo would and parsing it back
 * gives every feature of that arch (arm64 rows named arm64_<word> included). */
static void test_feature__cpuinfo_round_trip_all(void **state)
{
    (void)state;
    for (int arch = 0; arch < KS_ARCH__COUNT; arch++) {
        static char line[16384];
        size_t len = 0;
        for (unsigned i = 0; i < ks_feature_count(); i++) {
            const ks_feature_info *f = ks_feature_get(i);
            if ((int)f->arch != arch)
                continue;
            const char *word = f->name;
            if (arch == KS_ARCH_ARM64 && strncmp(word, "arm64_", 6) == 0)
                word += 6;
            int n = snprintf(line + len, sizeof line - len, "%s ", word);
            assert_true(n > 0 && (size_t)n < sizeof line - len);
            len += (size_t)n;
        }
        ks_featset got, all;
        size_t unknown = 99;
        ks_feature_from_cpuinfo(&got, (ks_arch)arch, line, &unknown);
        ks_feature_all_of_arch((ks_arch)arch, &all);
        assert_int_equal(unknown, 0);
        assert_true(ks_featset_equal(&got, &all));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature__concurrent_first_use),
        cmocka_unit_test(test_feature__golden_order),
        cmocka_unit_test(test_feature__fits_featset_and_counts),
        cmocka_unit_test(test_feature__entries_well_formed),
        cmocka_unit_test(test_feature__names_unique),
        cmocka_unit_test(test_feature__round_trip_names),
        cmocka_unit_test(test_feature__cpuid_and_hwcap_unique_round_trip),
        cmocka_unit_test(test_feature__known_locations),
        cmocka_unit_test(test_feature__depends_resolve_without_cycles),
        cmocka_unit_test(test_feature__qemu_names_exist_in_installed_qemu),
        cmocka_unit_test(test_feature__libvirt_names_exist_in_cpu_map),
        cmocka_unit_test(test_feature__qemu_and_libvirt_names),
        cmocka_unit_test(test_feature__unknown_name_errors),
        cmocka_unit_test(test_feature__cross_arch_names),
        cmocka_unit_test(test_feature__groups_well_formed),
        cmocka_unit_test(test_feature__group_members),
        cmocka_unit_test(test_feature__closure_table),
        cmocka_unit_test(test_feature__base_isa_and_arches),
        cmocka_unit_test(test_feature__decode_max_leaf),
        cmocka_unit_test(test_feature__decode_subleaves),
        cmocka_unit_test(test_feature__decode_every_entry),
        cmocka_unit_test(test_feature__decode_recorded_cpus),
        cmocka_unit_test(test_feature__from_cpuinfo),
        cmocka_unit_test(test_feature__cpuinfo_round_trip_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
