/*
 * ks_feature_table.c - THE feature catalogue: one row per CPU feature.
 *
 * APPEND-ONLY.  A row's index is the feature id, which is stored in
 * databases and sent between processes, so never reorder, insert in the
 * middle or delete rows: add new rows at the END of the table (whatever
 * their arch or CPUID word) and keep obsolete ones ("desc" may say so).
 * test_ks_feature.c pins the order with a golden list and a checksum; a
 * change that breaks it is a data-format break, not a test to update.
 *
 * x86 rows: name = Linux /proc/cpuinfo flag (arch/x86/include/asm/cpufeatures.h;
 * flags Linux hides take the lower-cased macro name), CPUID (leaf, subleaf,
 * register, bit), QEMU 7.2 -cpu property (target/i386/cpu.c feature_word_info)
 * and libvirt cpu_map name, or NULL where the tool has none.  depends follows
 * Linux arch/x86/kernel/cpu/cpuid-deps.c, plus the implications guests rely
 * on (avx512f needs avx2 and fma).
 * arm64 rows: name = /proc/cpuinfo "Features" word, with the AT_HWCAP (1) or
 * AT_HWCAP2 (2) bit of arch/arm64/include/uapi/asm/hwcap.h.  A word that is
 * also an x86 flag is named "arm64_<word>" (see ks_feature.c).
 */
#include "ks_feature.h"

#define NS KS_CPUID_NO_SUBLEAF
/* x86 row with a CPUID location */
#define X(n, lf, sl, r, b, q, lv, dep, d)                                                     \
    {n, KS_ARCH_X86_64, true, lf, sl, KS_CPUID_##r, b, 0, 0, q, lv, dep, d}
/* arm64 row with a HWCAP bit */
#define A(n, w, b, dep, d) {n, KS_ARCH_ARM64, false, 0, NS, 0, 0, w, b, NULL, NULL, dep, d}

typedef struct ks_feature__group {
    const char *name;
    ks_arch arch;
    const char *members;
} ks_feature__group;

typedef struct ks_feature__alias {
    const char *alias;
    const char *name;
} ks_feature__alias;

extern const ks_feature_info ks_feature__table[];
extern const size_t ks_feature__table_len;
extern const ks_feature__group ks_feature__groups[];
extern const size_t ks_feature__groups_len;
extern const ks_feature__alias ks_feature__aliases[];
extern const size_t ks_feature__aliases_len;

const ks_feature_info ks_feature__table[] = {
    /* ---- CPUID 1 EDX (Linux word 0) ---- */
    X("fpu", 1, NS, EDX, 0, "fpu", "fpu", NULL, "x87 floating point unit"),
    X("vme", 1, NS, EDX, 1, "vme", "vme", NULL, "virtual 8086 mode extensions"),
    X("de", 1, NS, EDX, 2, "de", "de", NULL, "debugging extensions"),
    X("pse", 1, NS, EDX, 3, "pse", "pse", NULL, "page size extensions"),
    X("tsc", 1, NS, EDX, 4, "tsc", "tsc", NULL, "time stamp counter"),
    X("msr", 1, NS, EDX, 5, "msr", "msr", NULL, "model-specific registers"),
    X("pae", 1, NS, EDX, 6, "pae", "pae", NULL, "physical address extensions"),
    X("mce", 1, NS, EDX, 7, "mce", "mce", NULL, "machine check exception"),
    X("cx8", 1, NS, EDX, 8, "cx8", "cx8", NULL, "CMPXCHG8B"),
    X("apic", 1, NS, EDX, 9, "apic", "apic", NULL, "on-chip APIC"),
    X("sep", 1, NS, EDX, 11, "sep", "sep", NULL, "SYSENTER/SYSEXIT"),
    X("mtrr", 1, NS, EDX, 12, "mtrr", "mtrr", NULL, "memory type range registers"),
    X("pge", 1, NS, EDX, 13, "pge", "pge", NULL, "page global enable"),
    X("mca", 1, NS, EDX, 14, "mca", "mca", NULL, "machine check architecture"),
    X("cmov", 1, NS, EDX, 15, "cmov", "cmov", "fxsr", "CMOV instructions"),
    X("pat", 1, NS, EDX, 16, "pat", "pat", NULL, "page attribute table"),
    X("pse36", 1, NS, EDX, 17, "pse36", "pse36", NULL, "36-bit PSEs"),
    X("pn", 1, NS, EDX, 18, "pn", "pn", NULL, "processor serial number"),
    X("clflush", 1, NS, EDX, 19, "clflush", "clflush", NULL, "CLFLUSH instruction"),
    X("dts", 1, NS, EDX, 21, "ds", "ds", NULL, "debug store"),
    X("acpi", 1, NS, EDX, 22, "acpi", "acpi", NULL, "ACPI via MSR"),
    X("mmx", 1, NS, EDX, 23, "mmx", "mmx", "fxsr", "MMX"),
    X("fxsr", 1, NS, EDX, 24, "fxsr", "fxsr", "fpu", "FXSAVE/FXRSTOR"),
    X("sse", 1, NS, EDX, 25, "sse", "sse", "fxsr", "SSE"),
    X("sse2", 1, NS, EDX, 26, "sse2", "sse2", "sse", "SSE2"),
    X("ss", 1, NS, EDX, 27, "ss", "ss", NULL, "CPU self snoop"),
    X("ht", 1, NS, EDX, 28, "ht", "ht", NULL, "hyper-threading"),
    X("tm", 1, NS, EDX, 29, "tm", "tm", NULL, "thermal monitor"),
    X("ia64", 1, NS, EDX, 30, "ia64", "ia64", NULL, "IA-64 processor"),
    X("pbe", 1, NS, EDX, 31, "pbe", "pbe", NULL, "pending break enable"),

    /* ---- CPUID 0x80000001 EDX (Linux word 1) ---- */
    X("syscall", 0x80000001, NS, EDX, 11, "syscall", "syscall", NULL, "SYSCALL/SYSRET"),
    X("mp", 0x80000001, NS, EDX, 19, NULL, NULL, NULL, "multiprocessing capable"),
    X("nx", 0x80000001, NS, EDX, 20, "nx", "nx", NULL, "execute disable"),
    X("mmxext", 0x80000001, NS, EDX, 22, "mmxext", "mmxext", "mmx", "AMD MMX extensions"),
    X("fxsr_opt", 0x80000001, NS, EDX, 25, "fxsr-opt", "fxsr_opt", "fxsr", "FXSAVE/FXRSTOR optimisations"),
    X("pdpe1gb", 0x80000001, NS, EDX, 26, "pdpe1gb", "pdpe1gb", NULL, "1 GiB pages"),
    X("rdtscp", 0x80000001, NS, EDX, 27, "rdtscp", "rdtscp", "tsc", "RDTSCP"),
    X("lm", 0x80000001, NS, EDX, 29, "lm", "lm", NULL, "long mode (x86-64)"),
    X("3dnowext", 0x80000001, NS, EDX, 30, "3dnowext", "3dnowext", "3dnow", "AMD 3DNow! extensions"),
    X("3dnow", 0x80000001, NS, EDX, 31, "3dnow", "3dnow", "mmx", "3DNow!"),

    /* ---- CPUID 1 ECX (Linux word 4) ---- */
    X("pni", 1, NS, ECX, 0, "pni", "pni", "sse2", "SSE3"),
    X("pclmulqdq", 1, NS, ECX, 1, "pclmulqdq", "pclmuldq", "sse2", "carry-less multiplication"),
    X("dtes64", 1, NS, ECX, 2, "dtes64", "dtes64", NULL, "64-bit debug store"),
    X("monitor", 1, NS, ECX, 3, "monitor", "monitor", NULL, "MONITOR/MWAIT"),
    X("ds_cpl", 1, NS, ECX, 4, "ds-cpl", "ds_cpl", NULL, "CPL-qualified debug store"),
    X("vmx", 1, NS, ECX, 5, "vmx", "vmx", NULL, "Intel VT-x"),
    X("smx", 1, NS, ECX, 6, "smx", "smx", NULL, "safer mode extensions (TXT)"),
    X("est", 1, NS, ECX, 7, "est", "est", NULL, "enhanced SpeedStep"),
    X("tm2", 1, NS, ECX, 8, "tm2", "tm2", NULL, "thermal monitor 2"),
    X("ssse3", 1, NS, ECX, 9, "ssse3", "ssse3", "pni", "supplemental SSE3"),
    X("cid", 1, NS, ECX, 10, "cid", "cid", NULL, "L1 context ID"),
    X("sdbg", 1, NS, ECX, 11, NULL, NULL, NULL, "silicon debug"),
    X("fma", 1, NS, ECX, 12, "fma", "fma", "avx", "fused multiply-add (FMA3)"),
    X("cx16", 1, NS, ECX, 13, "cx16", "cx16", "cx8", "CMPXCHG16B"),
    X("xtpr", 1, NS, ECX, 14, "xtpr", "xtpr", NULL, "send task priority messages"),
    X("pdcm", 1, NS, ECX, 15, "pdcm", "pdcm", NULL, "perfmon and debug capability"),
    X("pcid", 1, NS, ECX, 17, "pcid", "pcid", NULL, "process context identifiers"),
    X("dca", 1, NS, ECX, 18, "dca", "dca", NULL, "direct cache access"),
    X("sse4_1", 1, NS, ECX, 19, "sse4.1", "sse4.1", "ssse3", "SSE4.1"),
    X("sse4_2", 1, NS, ECX, 20, "sse4.2", "sse4.2", "sse4_1", "SSE4.2 (incl. CRC32)"),
    X("x2apic", 1, NS, ECX, 21, "x2apic", "x2apic", "apic", "x2APIC"),
    X("movbe", 1, NS, ECX, 22, "movbe", "movbe", NULL, "MOVBE"),
    X("popcnt", 1, NS, ECX, 23, "popcnt", "popcnt", NULL, "POPCNT"),
    X("tsc_deadline_timer", 1, NS, ECX, 24, "tsc-deadline", "tsc-deadline", "apic", "TSC deadline timer"),
    X("aes", 1, NS, ECX, 25, "aes", "aes", "sse2", "AES-NI"),
    X("xsave", 1, NS, ECX, 26, "xsave", "xsave", "fxsr", "XSAVE/XRSTOR/XSETBV/XGETBV"),
    X("osxsave", 1, NS, ECX, 27, NULL, "osxsave", "xsave", "XSAVE enabled by the OS"),
    X("avx", 1, NS, ECX, 28, "avx", "avx", "xsave sse4_2", "AVX"),
    X("f16c", 1, NS, ECX, 29, "f16c", "f16c", "avx sse2", "half-precision conversions"),
    X("rdrand", 1, NS, ECX, 30, "rdrand", "rdrand", NULL, "RDRAND"),
    X("hypervisor", 1, NS, ECX, 31, "hypervisor", "hypervisor", NULL, "running on a hypervisor"),

    /* ---- CPUID 0x80000001 ECX (Linux word 6) ---- */
    X("lahf_lm", 0x80000001, NS, ECX, 0, "lahf-lm", "lahf_lm", NULL, "LAHF/SAHF in long mode"),
    X("cmp_legacy", 0x80000001, NS, ECX, 1, "cmp-legacy", "cmp_legacy", NULL, "hyper-threading not valid"),
    X("svm", 0x80000001, NS, ECX, 2, "svm", "svm", NULL, "AMD-V"),
    X("extapic", 0x80000001, NS, ECX, 3, "extapic", "extapic", "apic", "extended APIC space"),
    X("cr8_legacy", 0x80000001, NS, ECX, 4, "cr8legacy", "cr8legacy", NULL, "CR8 in 32-bit mode"),
    X("abm", 0x80000001, NS, ECX, 5, "abm", "abm", NULL, "LZCNT (advanced bit manipulation)"),
    X("sse4a", 0x80000001, NS, ECX, 6, "sse4a", "sse4a", "pni", "AMD SSE4a"),
    X("misalignsse", 0x80000001, NS, ECX, 7, "misalignsse", "misalignsse", "sse", "misaligned SSE mode"),
    X("3dnowprefetch", 0x80000001, NS, ECX, 8, "3dnowprefetch", "3dnowprefetch", NULL, "PREFETCH/PREFETCHW"),
    X("osvw", 0x80000001, NS, ECX, 9, "osvw", "osvw", NULL, "OS visible workaround"),
    X("ibs", 0x80000001, NS, ECX, 10, "ibs", "ibs", NULL, "instruction based sampling"),
    X("xop", 0x80000001, NS, ECX, 11, "xop", "xop", "avx", "AMD XOP"),
    X("skinit", 0x80000001, NS, ECX, 12, "skinit", "skinit", NULL, "SKINIT/STGI"),
    X("wdt", 0x80000001, NS, ECX, 13, "wdt", "wdt", NULL, "watchdog timer"),
    X("lwp", 0x80000001, NS, ECX, 15, "lwp", "lwp", NULL, "light weight profiling"),
    X("fma4", 0x80000001, NS, ECX, 16, "fma4", "fma4", "avx", "AMD FMA4"),
    X("tce", 0x80000001, NS, ECX, 17, "tce", "tce", NULL, "translation cache extension"),
    X("nodeid_msr", 0x80000001, NS, ECX, 19, "nodeid-msr", "nodeid_msr", NULL, "NodeId MSR"),
    X("tbm", 0x80000001, NS, ECX, 21, "tbm", "tbm", NULL, "trailing bit manipulation"),
    X("topoext", 0x80000001, NS, ECX, 22, "topoext", "topoext", NULL, "topology extensions"),
    X("perfctr_core", 0x80000001, NS, ECX, 23, "perfctr-core", "perfctr_core", NULL, "core performance counter extensions"),
    X("perfctr_nb", 0x80000001, NS, ECX, 24, "perfctr-nb", "perfctr_nb", NULL, "NB performance counter extensions"),
    X("bpext", 0x80000001, NS, ECX, 26, NULL, NULL, NULL, "data breakpoint extension"),
    X("ptsc", 0x80000001, NS, ECX, 27, NULL, NULL, NULL, "performance time-stamp counter"),
    X("perfctr_llc", 0x80000001, NS, ECX, 28, NULL, NULL, NULL, "last level cache performance counters"),
    X("mwaitx", 0x80000001, NS, ECX, 29, NULL, NULL, NULL, "MWAITX/MONITORX"),

    /* ---- CPUID 7.0 EBX (Linux word 9) ---- */
    X("fsgsbase", 7, 0, EBX, 0, "fsgsbase", "fsgsbase", NULL, "RD/WR FS/GS BASE"),
    X("tsc_adjust", 7, 0, EBX, 1, "tsc-adjust", "tsc_adjust", "tsc", "TSC adjustment MSR"),
    X("sgx", 7, 0, EBX, 2, "sgx", "sgx", NULL, "software guard extensions"),
    X("bmi1", 7, 0, EBX, 3, "bmi1", "bmi1", NULL, "bit manipulation 1"),
    X("hle", 7, 0, EBX, 4, "hle", "hle", NULL, "hardware lock elision"),
    X("avx2", 7, 0, EBX, 5, "avx2", "avx2", "avx", "AVX2"),
    X("fdp_excptn_only", 7, 0, EBX, 6, "fdp-excptn-only", NULL, NULL, "FPU data pointer updated only on x87 exceptions"),
    X("smep", 7, 0, EBX, 7, "smep", "smep", NULL, "supervisor mode execution protection"),
    X("bmi2", 7, 0, EBX, 8, "bmi2", "bmi2", NULL, "bit manipulation 2"),
    X("erms", 7, 0, EBX, 9, "erms", "erms", NULL, "enhanced REP MOVSB/STOSB"),
    X("invpcid", 7, 0, EBX, 10, "invpcid", "invpcid", "pcid", "INVPCID"),
    X("rtm", 7, 0, EBX, 11, "rtm", "rtm", NULL, "restricted transactional memory"),
    X("cqm", 7, 0, EBX, 12, NULL, "cmt", NULL, "cache QoS monitoring"),
    X("zero_fcs_fds", 7, 0, EBX, 13, "zero-fcs-fds", NULL, NULL, "FPU CS and DS deprecated"),
    X("mpx", 7, 0, EBX, 14, "mpx", "mpx", "xsave", "memory protection extensions"),
    X("rdt_a", 7, 0, EBX, 15, NULL, NULL, NULL, "resource director technology allocation"),
    X("avx512f", 7, 0, EBX, 16, "avx512f", "avx512f", "avx2 fma", "AVX-512 foundation"),
    X("avx512dq", 7, 0, EBX, 17, "avx512dq", "avx512dq", "avx512f", "AVX-512 doubleword and quadword"),
    X("rdseed", 7, 0, EBX, 18, "rdseed", "rdseed", NULL, "RDSEED"),
    X("adx", 7, 0, EBX, 19, "adx", "adx", NULL, "ADCX/ADOX"),
    X("smap", 7, 0, EBX, 20, "smap", "smap", NULL, "supervisor mode access prevention"),
    X("avx512ifma", 7, 0, EBX, 21, "avx512ifma", "avx512ifma", "avx512f", "AVX-512 integer FMA"),
    X("pcommit", 7, 0, EBX, 22, "pcommit", "pcommit", NULL, "PCOMMIT (withdrawn)"),
    X("clflushopt", 7, 0, EBX, 23, "clflushopt", "clflushopt", "clflush", "CLFLUSHOPT"),
    X("clwb", 7, 0, EBX, 24, "clwb", "clwb", NULL, "CLWB"),
    X("intel_pt", 7, 0, EBX, 25, "intel-pt", "intel-pt", NULL, "Intel processor trace"),
    X("avx512pf", 7, 0, EBX, 26, "avx512pf", "avx512pf", "avx512f", "AVX-512 prefetch (Xeon Phi)"),
    X("avx512er", 7, 0, EBX, 27, "avx512er", "avx512er", "avx512f", "AVX-512 exponential and reciprocal (Xeon Phi)"),
    X("avx512cd", 7, 0, EBX, 28, "avx512cd", "avx512cd", "avx512f", "AVX-512 conflict detection"),
    X("sha_ni", 7, 0, EBX, 29, "sha-ni", "sha-ni", "sse2", "SHA1/SHA256 extensions"),
    X("avx512bw", 7, 0, EBX, 30, "avx512bw", "avx512bw", "avx512f", "AVX-512 byte and word"),
    X("avx512vl", 7, 0, EBX, 31, "avx512vl", "avx512vl", "avx512f", "AVX-512 vector length extensions"),

    /* ---- CPUID 0xd.1 EAX (Linux word 10) ---- */
    X("xsaveopt", 0xd, 1, EAX, 0, "xsaveopt", "xsaveopt", "xsave", "XSAVEOPT"),
    X("xsavec", 0xd, 1, EAX, 1, "xsavec", "xsavec", "xsave", "XSAVEC"),
    X("xgetbv1", 0xd, 1, EAX, 2, "xgetbv1", "xgetbv1", "xsave", "XGETBV with ECX=1"),
    X("xsaves", 0xd, 1, EAX, 3, "xsaves", "xsaves", "xsave", "XSAVES/XRSTORS"),
    X("xfd", 0xd, 1, EAX, 4, "xfd", "xfd", "xsaves xgetbv1", "extended feature disable"),

    /* ---- CPUID 7.1 EAX (Linux word 12) ---- */
    X("avx_vnni", 7, 1, EAX, 4, "avx-vnni", "avx-vnni", "avx2", "AVX (VEX) VNNI"),
    X("avx512_bf16", 7, 1, EAX, 5, "avx512-bf16", "avx512-bf16", "avx512vl", "AVX-512 BFLOAT16"),

    /* ---- CPUID 7.0 ECX (Linux word 16) ---- */
    X("avx512vbmi", 7, 0, ECX, 1, "avx512vbmi", "avx512vbmi", "avx512f avx512bw", "AVX-512 vector byte manipulation"),
    X("umip", 7, 0, ECX, 2, "umip", "umip", NULL, "user mode instruction protection"),
    X("pku", 7, 0, ECX, 3, "pku", "pku", "xsave", "protection keys for user pages"),
    X("ospke", 7, 0, ECX, 4, NULL, "ospke", "pku", "protection keys enabled by the OS"),
    X("waitpkg", 7, 0, ECX, 5, "waitpkg", "waitpkg", NULL, "UMONITOR/UMWAIT/TPAUSE"),
    X("avx512_vbmi2", 7, 0, ECX, 6, "avx512vbmi2", "avx512vbmi2", "avx512vl avx512bw", "AVX-512 VBMI2"),
    X("shstk", 7, 0, ECX, 7, NULL, NULL, "xsaves", "CET shadow stack"),
    X("gfni", 7, 0, ECX, 8, "gfni", "gfni", "sse2", "Galois field new instructions"),
    X("vaes", 7, 0, ECX, 9, "vaes", "vaes", "avx aes", "vector AES"),
    X("vpclmulqdq", 7, 0, ECX, 10, "vpclmulqdq", "vpclmulqdq", "avx pclmulqdq", "vector carry-less multiplication"),
    X("avx512_vnni", 7, 0, ECX, 11, "avx512vnni", "avx512vnni", "avx512vl", "AVX-512 VNNI"),
    X("avx512_bitalg", 7, 0, ECX, 12, "avx512bitalg", "avx512bitalg", "avx512vl avx512bw", "AVX-512 BITALG"),
    X("tme", 7, 0, ECX, 13, NULL, NULL, NULL, "total memory encryption"),
    X("avx512_vpopcntdq", 7, 0, ECX, 14, "avx512-vpopcntdq", "avx512-vpopcntdq", "avx512f", "AVX-512 VPOPCNTD/Q"),
    X("la57", 7, 0, ECX, 16, "la57", "la57", NULL, "5-level paging"),
    X("rdpid", 7, 0, ECX, 22, "rdpid", "rdpid", NULL, "RDPID"),
    X("bus_lock_detect", 7, 0, ECX, 24, "bus-lock-detect", "bus-lock-detect", NULL, "bus lock detection"),
    X("cldemote", 7, 0, ECX, 25, "cldemote", "cldemote", NULL, "CLDEMOTE"),
    X("movdiri", 7, 0, ECX, 27, "movdiri", "movdiri", NULL, "MOVDIRI"),
    X("movdir64b", 7, 0, ECX, 28, "movdir64b", "movdir64b", NULL, "MOVDIR64B"),
    X("enqcmd", 7, 0, ECX, 29, NULL, NULL, "xsaves", "ENQCMD/ENQCMDS"),
    X("sgx_lc", 7, 0, ECX, 30, "sgxlc", "sgxlc", "sgx", "SGX launch configuration"),

    /* ---- CPUID 7.0 EDX (Linux word 18) ---- */
    X("avx512_4vnniw", 7, 0, EDX, 2, "avx512-4vnniw", "avx512-4vnniw", "avx512f", "AVX-512 4x VNNI word (Xeon Phi)"),
    X("avx512_4fmaps", 7, 0, EDX, 3, "avx512-4fmaps", "avx512-4fmaps", "avx512f", "AVX-512 4x FMA single (Xeon Phi)"),
    X("fsrm", 7, 0, EDX, 4, "fsrm", "fsrm", NULL, "fast short REP MOV"),
    X("avx512_vp2intersect", 7, 0, EDX, 8, "avx512-vp2intersect", "avx512-vp2intersect", "avx512vl", "AVX-512 VP2INTERSECT"),
    X("srbds_ctrl", 7, 0, EDX, 9, NULL, NULL, NULL, "SRBDS mitigation MSR"),
    X("md_clear", 7, 0, EDX, 10, "md-clear", "md-clear", NULL, "VERW clears CPU buffers"),
    X("rtm_always_abort", 7, 0, EDX, 11, NULL, NULL, NULL, "RTM transactions always abort"),
    X("tsx_force_abort", 7, 0, EDX, 13, NULL, NULL, NULL, "TSX_FORCE_ABORT MSR"),
    X("serialize", 7, 0, EDX, 14, "serialize", "serialize", NULL, "SERIALIZE"),
    X("hybrid_cpu", 7, 0, EDX, 15, NULL, NULL, NULL, "hybrid core types"),
    X("tsxldtrk", 7, 0, EDX, 16, "tsx-ldtrk", "tsx-ldtrk", NULL, "TSX suspend load address tracking"),
    X("pconfig", 7, 0, EDX, 18, NULL, "pconfig", NULL, "PCONFIG"),
    X("arch_lbr", 7, 0, EDX, 19, "arch-lbr", "arch-lbr", NULL, "architectural LBRs"),
    X("ibt", 7, 0, EDX, 20, NULL, NULL, "xsaves", "CET indirect branch tracking"),
    X("amx_bf16", 7, 0, EDX, 22, "amx-bf16", "amx-bf16", "amx_tile", "AMX BFLOAT16"),
    X("avx512_fp16", 7, 0, EDX, 23, "avx512-fp16", "avx512-fp16", "avx512bw avx512vl", "AVX-512 FP16"),
    X("amx_tile", 7, 0, EDX, 24, "amx-tile", "amx-tile", "xfd", "AMX tile registers"),
    X("amx_int8", 7, 0, EDX, 25, "amx-int8", "amx-int8", "amx_tile", "AMX INT8"),
    X("spec_ctrl", 7, 0, EDX, 26, "spec-ctrl", "spec-ctrl", NULL, "IBRS and IBPB"),
    X("intel_stibp", 7, 0, EDX, 27, "stibp", "stibp", "spec_ctrl", "single thread indirect branch predictors"),
    X("flush_l1d", 7, 0, EDX, 28, "flush-l1d", NULL, NULL, "L1D flush MSR"),
    X("arch_capabilities", 7, 0, EDX, 29, "arch-capabilities", "arch-capabilities", NULL, "IA32_ARCH_CAPABILITIES MSR"),
    X("core_capabilities", 7, 0, EDX, 30, "core-capability", "core-capability", NULL, "IA32_CORE_CAPABILITIES MSR"),
    X("spec_ctrl_ssbd", 7, 0, EDX, 31, "ssbd", "ssbd", "spec_ctrl", "speculative store bypass disable"),

    /* ---- arm64 AT_HWCAP ---- */
    A("fp", 1, 0, NULL, "floating point"),
    A("asimd", 1, 1, "fp", "Advanced SIMD (NEON)"),
    A("evtstrm", 1, 2, NULL, "generic timer event stream"),
    A("arm64_aes", 1, 3, "asimd", "AES instructions"),
    A("pmull", 1, 4, "asimd", "polynomial multiply long"),
    A("sha1", 1, 5, "asimd", "SHA1 instructions"),
    A("sha2", 1, 6, "asimd", "SHA256 instructions"),
    A("crc32", 1, 7, NULL, "CRC32 instructions"),
    A("atomics", 1, 8, NULL, "large system extensions atomics (LSE)"),
    A("fphp", 1, 9, "fp", "half-precision floating point"),
    A("asimdhp", 1, 10, "asimd fphp", "Advanced SIMD half precision"),
    A("cpuid", 1, 11, NULL, "EL0 access to ID registers"),
    A("asimdrdm", 1, 12, "asimd", "rounding double multiply accumulate"),
    A("jscvt", 1, 13, "fp", "JavaScript conversion"),
    A("fcma", 1, 14, "asimd", "complex number multiply-add"),
    A("lrcpc", 1, 15, NULL, "load-acquire RCpc"),
    A("dcpop", 1, 16, NULL, "DC CVAP"),
    A("sha3", 1, 17, "asimd", "SHA3 instructions"),
    A("arm64_sm3", 1, 18, "asimd", "SM3 instructions"),
    A("arm64_sm4", 1, 19, "asimd", "SM4 instructions"),
    A("asimddp", 1, 20, "asimd", "dot product"),
    A("arm64_sha512", 1, 21, "sha2", "SHA512 instructions"),
    A("sve", 1, 22, "asimd fphp", "scalable vector extension"),
    A("asimdfhm", 1, 23, "asimdhp", "FP16 multiply-accumulate to FP32"),
    A("dit", 1, 24, NULL, "data independent timing"),
    A("uscat", 1, 25, NULL, "unaligned single-copy atomicity"),
    A("ilrcpc", 1, 26, "lrcpc", "load-acquire RCpc with immediate offsets"),
    A("flagm", 1, 27, NULL, "flag manipulation"),
    A("ssbs", 1, 28, NULL, "speculative store bypass safe"),
    A("sb", 1, 29, NULL, "speculation barrier"),
    A("paca", 1, 30, NULL, "pointer authentication (address)"),
    A("pacg", 1, 31, NULL, "pointer authentication (generic)"),

    /* ---- arm64 AT_HWCAP2 ---- */
    A("dcpodp", 2, 0, "dcpop", "DC CVADP"),
    A("sve2", 2, 1, "sve", "SVE2"),
    A("sveaes", 2, 2, "sve2 arm64_aes", "SVE2 AES"),
    A("svepmull", 2, 3, "sve2 pmull", "SVE2 polynomial multiply long"),
    A("svebitperm", 2, 4, "sve2", "SVE2 bit permute"),
    A("svesha3", 2, 5, "sve2 sha3", "SVE2 SHA3"),
    A("svesm4", 2, 6, "sve2 arm64_sm4", "SVE2 SM4"),
    A("flagm2", 2, 7, "flagm", "flag manipulation 2"),
    A("frint", 2, 8, "fp", "FRINT rounding"),
    A("svei8mm", 2, 9, "sve i8mm", "SVE int8 matrix multiply"),
    A("svef32mm", 2, 10, "sve", "SVE fp32 matrix multiply"),
    A("svef64mm", 2, 11, "sve", "SVE fp64 matrix multiply"),
    A("svebf16", 2, 12, "sve bf16", "SVE BFloat16"),
    A("i8mm", 2, 13, "asimd", "int8 matrix multiply"),
    A("bf16", 2, 14, "asimd", "BFloat16"),
    A("dgh", 2, 15, NULL, "data gathering hint"),
    A("arm64_rng", 2, 16, NULL, "random number (RNDR)"),
    A("bti", 2, 17, NULL, "branch target identification"),
    A("mte", 2, 18, NULL, "memory tagging"),

    /* ======== appended after the first release of the table ======== */

    /* ---- arm64 AT_HWCAP2 (continued) ---- */
    A("ecv", 2, 19, NULL, "enhanced counter virtualisation"),
    A("afp", 2, 20, "fp", "alternate floating-point behaviour"),
    A("rpres", 2, 21, "asimd", "increased precision of reciprocal estimates"),
    A("mte3", 2, 22, "mte", "asymmetric MTE tag check faults"),
    A("arm64_sme", 2, 23, "fphp asimdhp", "scalable matrix extension"),
    A("smei16i64", 2, 24, "arm64_sme", "SME I16I64"),
    A("smef64f64", 2, 25, "arm64_sme", "SME F64F64"),
    A("smei8i32", 2, 26, "arm64_sme", "SME I8I32"),
    A("smef16f32", 2, 27, "arm64_sme", "SME F16F32"),
    A("smeb16f32", 2, 28, "arm64_sme", "SME B16F32"),
    A("smef32f32", 2, 29, "arm64_sme", "SME F32F32"),
    A("smefa64", 2, 30, "arm64_sme", "SME full A64 in streaming mode"),
    A("wfxt", 2, 31, NULL, "WFET/WFIT"),
    A("ebf16", 2, 32, "bf16", "extended BFloat16 behaviour"),
    A("sveebf16", 2, 33, "svebf16", "SVE extended BFloat16"),
    A("cssc", 2, 34, NULL, "common short sequence compression"),
    A("rprfm", 2, 35, NULL, "range prefetch"),
    A("sve2p1", 2, 36, "sve2", "SVE2.1"),
    A("sme2", 2, 37, "arm64_sme", "SME2"),
    A("sme2p1", 2, 38, "sme2", "SME2.1"),
    A("smei16i32", 2, 39, "sme2", "SME2 I16I32"),
    A("smebi32i32", 2, 40, "sme2", "SME2 BI32I32"),
    A("smeb16b16", 2, 41, "sme2", "SME2 B16B16"),
    A("smef16f16", 2, 42, "sme2", "SME2 F16F16"),
    A("mops", 2, 43, NULL, "memory copy and set instructions"),
    A("hbc", 2, 44, NULL, "hinted conditional branches"),
    A("sveb16b16", 2, 45, "sve2", "SVE B16B16"),
    A("lrcpc3", 2, 46, "ilrcpc", "load-acquire RCpc 3"),
    A("lse128", 2, 47, "atomics", "128-bit atomics"),
    A("fpmr", 2, 48, "fp", "floating-point mode register"),
    A("lut", 2, 49, "asimd", "lookup table instructions"),
    A("faminmax", 2, 50, "asimd", "floating-point absolute min/max"),
    A("f8cvt", 2, 51, "fpmr", "FP8 conversions"),
    A("f8fma", 2, 52, "fpmr", "FP8 multiply-add"),
    A("f8dp4", 2, 53, "fpmr", "FP8 4-way dot product"),
    A("f8dp2", 2, 54, "fpmr", "FP8 2-way dot product"),
    A("f8e4m3", 2, 55, "fpmr", "FP8 E4M3 format"),
    A("f8e5m2", 2, 56, "fpmr", "FP8 E5M2 format"),
    A("smelutv2", 2, 57, "sme2", "SME2 lookup table v2"),
    A("smef8f16", 2, 58, "sme2 fpmr", "SME2 FP8 to FP16"),
    A("smef8f32", 2, 59, "sme2 fpmr", "SME2 FP8 to FP32"),
    A("smesf8fma", 2, 60, "sme2 fpmr", "streaming SVE FP8 multiply-add"),
    A("smesf8dp4", 2, 61, "sme2 fpmr", "streaming SVE FP8 4-way dot product"),
    A("smesf8dp2", 2, 62, "sme2 fpmr", "streaming SVE FP8 2-way dot product"),
    A("poe", 2, 63, NULL, "permission overlay extension"),
    A("gcs", 1, 32, NULL, "guarded control stack"),

    /* ---- CPUID 0xc0000001 EDX, Centaur/Zhaoxin (Linux word 5) ---- */
    X("rng", 0xc0000001, NS, EDX, 2, "xstore", NULL, NULL, "PadLock RNG present (XSTORE)"),
    X("rng_en", 0xc0000001, NS, EDX, 3, "xstore-en", NULL, "rng", "PadLock RNG enabled"),
    X("ace", 0xc0000001, NS, EDX, 6, "xcrypt", NULL, NULL, "PadLock crypto engine (XCRYPT)"),
    X("ace_en", 0xc0000001, NS, EDX, 7, "xcrypt-en", NULL, "ace", "PadLock crypto engine enabled"),
    X("ace2", 0xc0000001, NS, EDX, 8, "ace2", NULL, NULL, "PadLock advanced crypto engine v2"),
    X("ace2_en", 0xc0000001, NS, EDX, 9, "ace2-en", NULL, "ace2", "ACE v2 enabled"),
    X("phe", 0xc0000001, NS, EDX, 10, "phe", NULL, NULL, "PadLock hash engine"),
    X("phe_en", 0xc0000001, NS, EDX, 11, "phe-en", NULL, "phe", "PadLock hash engine enabled"),
    X("pmm", 0xc0000001, NS, EDX, 12, "pmm", NULL, NULL, "PadLock Montgomery multiplier"),
    X("pmm_en", 0xc0000001, NS, EDX, 13, "pmm-en", NULL, "pmm", "PadLock Montgomery multiplier enabled"),

    /* ---- CPUID 0x80000001 ECX (word 6, continued) ---- */
    X("cvt16", 0x80000001, NS, ECX, 18, NULL, "cvt16", NULL, "AMD half-precision conversions (obsolete)"),

    /* ---- CPUID 0x7.0 (more) ---- */
    X("prefetchwt1", 7, 0, ECX, 0, NULL, NULL, NULL, "PREFETCHWT1"),
    X("kl", 7, 0, ECX, 23, NULL, NULL, NULL, "Key Locker"),
    X("pks", 7, 0, ECX, 31, "pks", "pks", NULL, "protection keys for supervisor pages"),
    X("uintr", 7, 0, EDX, 5, NULL, NULL, "xsaves", "user interrupts"),

    /* ---- CPUID 7.1 EAX (word 12, continued) ---- */
    X("sha512", 7, 1, EAX, 0, "sha512", NULL, "avx", "SHA512 instructions"),
    X("sm3", 7, 1, EAX, 1, "sm3", NULL, "avx", "SM3 instructions"),
    X("sm4", 7, 1, EAX, 2, "sm4", NULL, "avx", "SM4 instructions"),
    X("rao_int", 7, 1, EAX, 3, NULL, NULL, NULL, "remote atomic operations (integer)"),
    X("lass", 7, 1, EAX, 6, NULL, NULL, "smap", "linear address space separation"),
    X("cmpccxadd", 7, 1, EAX, 7, "cmpccxadd", NULL, NULL, "CMPccXADD"),
    X("arch_perfmon_ext", 7, 1, EAX, 8, NULL, NULL, NULL, "architectural perfmon extension leaf"),
    X("fzrm", 7, 1, EAX, 10, "fzrm", "fzrm", NULL, "fast zero-length REP MOVSB"),
    X("fsrs", 7, 1, EAX, 11, "fsrs", "fsrs", NULL, "fast short REP STOSB"),
    X("fsrc", 7, 1, EAX, 12, "fsrc", "fsrc", NULL, "fast short REP CMPSB/SCASB"),
    X("fred", 7, 1, EAX, 17, "fred", NULL, "lkgs", "flexible return and event delivery"),
    X("lkgs", 7, 1, EAX, 18, "lkgs", NULL, NULL, "load kernel GS"),
    X("wrmsrns", 7, 1, EAX, 19, "wrmsrns", NULL, NULL, "non-serialising WRMSR"),
    X("amx_fp16", 7, 1, EAX, 21, "amx-fp16", "amx-fp16", "amx_tile", "AMX FP16"),
    X("hreset", 7, 1, EAX, 22, NULL, NULL, NULL, "history reset"),
    X("avx_ifma", 7, 1, EAX, 23, "avx-ifma", NULL, "avx2", "AVX (VEX) integer FMA"),
    X("lam", 7, 1, EAX, 26, "lam", NULL, NULL, "linear address masking"),
    X("msrlist", 7, 1, EAX, 27, NULL, NULL, NULL, "RDMSRLIST/WRMSRLIST"),

    /* ---- CPUID 7.1 EDX ---- */
    X("avx_vnni_int8", 7, 1, EDX, 4, "avx-vnni-int8", NULL, "avx2", "AVX VNNI INT8"),
    X("avx_ne_convert", 7, 1, EDX, 5, "avx-ne-convert", NULL, "avx2", "AVX no-exception FP conversions"),
    X("amx_complex", 7, 1, EDX, 8, "amx-complex", NULL, "amx_tile", "AMX complex FP16"),
    X("avx_vnni_int16", 7, 1, EDX, 10, "avx-vnni-int16", NULL, "avx2", "AVX VNNI INT16"),
    X("prefetchiti", 7, 1, EDX, 14, "prefetchiti", NULL, NULL, "PREFETCHIT0/1"),
    X("user_msr", 7, 1, EDX, 15, NULL, NULL, NULL, "URDMSR/UWRMSR"),
    X("avx10", 7, 1, EDX, 19, "avx10", NULL, "avx512f avx512bw avx512cd avx512dq avx512vl", "AVX10 converged vector ISA"),
    X("apx", 7, 1, EDX, 21, NULL, NULL, "xsave", "advanced performance extensions (APX_F)"),

    /* ---- CPUID 7.2 EDX ---- */
    X("intel_psfd", 7, 2, EDX, 0, "intel-psfd", NULL, NULL, "predictive store forwarding disable"),
    X("ipred_ctrl", 7, 2, EDX, 1, "ipred-ctrl", NULL, NULL, "IPRED_DIS control"),
    X("rrsba_ctrl", 7, 2, EDX, 2, "rrsba-ctrl", NULL, NULL, "RRSBA_DIS control"),
    X("ddpd_u", 7, 2, EDX, 3, "ddpd-u", NULL, NULL, "data dependent prefetcher disable"),
    X("bhi_ctrl", 7, 2, EDX, 4, "bhi-ctrl", NULL, NULL, "BHI_DIS_S control"),
    X("mcdt_no", 7, 2, EDX, 5, "mcdt-no", NULL, NULL, "not affected by MXCSR configuration dependent timing"),

    /* ---- CPUID 0x24.0 EBX: AVX10 vector lengths ---- */
    X("avx10_128", 0x24, 0, EBX, 16, "avx10-128", NULL, "avx10", "AVX10 128-bit vectors"),
    X("avx10_256", 0x24, 0, EBX, 17, "avx10-256", NULL, "avx10_128", "AVX10 256-bit vectors"),
    X("avx10_512", 0x24, 0, EBX, 18, "avx10-512", NULL, "avx10_256", "AVX10 512-bit vectors"),

    /* ---- CPUID 0x19 EBX: Key Locker ---- */
    X("aeskle", 0x19, NS, EBX, 0, NULL, NULL, "kl aes", "AES Key Locker instructions"),
    X("wide_kl", 0x19, NS, EBX, 2, NULL, NULL, "aeskle", "wide Key Locker instructions"),

    /* ---- CPUID 6 (Linux word 14 and scattered) ---- */
    X("dtherm", 6, NS, EAX, 0, NULL, NULL, NULL, "digital thermal sensor"),
    X("ida", 6, NS, EAX, 1, NULL, NULL, NULL, "Intel dynamic acceleration (turbo)"),
    X("arat", 6, NS, EAX, 2, "arat", "arat", NULL, "always running APIC timer"),
    X("pln", 6, NS, EAX, 4, NULL, NULL, NULL, "power limit notification"),
    X("pts", 6, NS, EAX, 6, NULL, NULL, NULL, "package thermal status"),
    X("hwp", 6, NS, EAX, 7, NULL, NULL, NULL, "hardware P-states"),
    X("hwp_notify", 6, NS, EAX, 8, NULL, NULL, "hwp", "HWP notification"),
    X("hwp_act_window", 6, NS, EAX, 9, NULL, NULL, "hwp", "HWP activity window"),
    X("hwp_epp", 6, NS, EAX, 10, NULL, NULL, "hwp", "HWP energy performance preference"),
    X("hwp_pkg_req", 6, NS, EAX, 11, NULL, NULL, "hwp", "HWP package level request"),
    X("hwp_highest_perf_change", 6, NS, EAX, 15, NULL, NULL, "hwp", "HWP highest performance change"),
    X("hfi", 6, NS, EAX, 19, NULL, NULL, NULL, "hardware feedback interface"),
    X("epb", 6, NS, ECX, 3, NULL, NULL, NULL, "energy performance bias"),

    /* ---- CPUID 0xf / 0x10 / 0x12: RDT and SGX (Linux word 11 and scattered) ---- */
    X("cqm_llc", 0xf, 0, EDX, 1, NULL, NULL, NULL, "LLC QoS monitoring"),
    X("cqm_occup_llc", 0xf, 1, EDX, 0, NULL, NULL, "cqm_llc", "LLC occupancy monitoring"),
    X("cqm_mbm_total", 0xf, 1, EDX, 1, NULL, "mbm_total", "cqm_llc", "LLC total memory bandwidth monitoring"),
    X("cqm_mbm_local", 0xf, 1, EDX, 2, NULL, "mbm_local", "cqm_llc", "LLC local memory bandwidth monitoring"),
    X("cat_l3", 0x10, 0, EBX, 1, NULL, NULL, NULL, "L3 cache allocation"),
    X("cat_l2", 0x10, 0, EBX, 2, NULL, NULL, NULL, "L2 cache allocation"),
    X("mba", 0x10, 0, EBX, 3, NULL, NULL, NULL, "memory bandwidth allocation"),
    X("cdp_l3", 0x10, 1, ECX, 2, NULL, NULL, "cat_l3", "L3 code and data prioritisation"),
    X("cdp_l2", 0x10, 2, ECX, 2, NULL, NULL, "cat_l2", "L2 code and data prioritisation"),
    X("per_thread_mba", 0x10, 3, ECX, 0, NULL, NULL, "mba", "per-thread memory bandwidth allocation"),
    X("sgx1", 0x12, 0, EAX, 0, NULL, "sgx1", "sgx", "SGX1 leaf functions"),
    X("sgx2", 0x12, 0, EAX, 1, NULL, "sgx2", "sgx1", "SGX2 dynamic memory management"),
    X("sgx_edeccssa", 0x12, 0, EAX, 11, NULL, "sgx-edeccssa", "sgx1", "SGX EDECCSSA leaf"),
    X("intel_pt_lip", 0x14, 0, ECX, 31, NULL, "intel-pt-lip", "intel_pt", "processor trace uses linear IPs"),

    /* ---- CPUID 0x80000007 (Linux word 17 and scattered) ---- */
    X("overflow_recov", 0x80000007, NS, EBX, 0, "overflow-recov", NULL, NULL, "MCA overflow recovery"),
    X("succor", 0x80000007, NS, EBX, 1, "succor", NULL, NULL, "uncorrectable error containment and recovery"),
    X("smca", 0x80000007, NS, EBX, 3, NULL, NULL, NULL, "scalable MCA"),
    X("hw_pstate", 0x80000007, NS, EDX, 7, NULL, NULL, NULL, "AMD hardware P-states"),
    X("invtsc", 0x80000007, NS, EDX, 8, "invtsc", "invtsc", "tsc", "invariant TSC (Linux: constant_tsc nonstop_tsc)"),
    X("cpb", 0x80000007, NS, EDX, 9, NULL, NULL, NULL, "AMD core performance boost"),
    X("proc_feedback", 0x80000007, NS, EDX, 11, NULL, NULL, NULL, "AMD processor feedback interface"),

    /* ---- CPUID 0x80000008 EBX (Linux word 13) ---- */
    X("clzero", 0x80000008, NS, EBX, 0, "clzero", "clzero", NULL, "CLZERO"),
    X("irperf", 0x80000008, NS, EBX, 1, NULL, NULL, NULL, "instructions retired counter"),
    X("xsaveerptr", 0x80000008, NS, EBX, 2, "xsaveerptr", "xsaveerptr", NULL, "always save/restore FP error pointers"),
    X("rdpru", 0x80000008, NS, EBX, 4, NULL, NULL, NULL, "RDPRU"),
    X("wbnoinvd", 0x80000008, NS, EBX, 9, "wbnoinvd", "wbnoinvd", NULL, "WBNOINVD"),
    X("amd_ibpb", 0x80000008, NS, EBX, 12, "ibpb", "ibpb", NULL, "AMD indirect branch prediction barrier"),
    X("amd_ibrs", 0x80000008, NS, EBX, 14, "ibrs", "ibrs", NULL, "AMD indirect branch restricted speculation"),
    X("amd_stibp", 0x80000008, NS, EBX, 15, "amd-stibp", "amd-stibp", NULL, "AMD single thread indirect branch predictors"),
    X("amd_stibp_always_on", 0x80000008, NS, EBX, 17, "stibp-always-on", NULL, "amd_stibp", "STIBP always-on preferred"),
    X("amd_ppin", 0x80000008, NS, EBX, 23, NULL, NULL, NULL, "AMD protected processor inventory number"),
    X("amd_ssbd", 0x80000008, NS, EBX, 24, "amd-ssbd", "amd-ssbd", NULL, "AMD speculative store bypass disable"),
    X("virt_ssbd", 0x80000008, NS, EBX, 25, "virt-ssbd", "virt-ssbd", NULL, "virtualised speculative store bypass disable"),
    X("amd_ssb_no", 0x80000008, NS, EBX, 26, "amd-no-ssb", "amd-no-ssb", NULL, "not affected by speculative store bypass"),
    X("cppc", 0x80000008, NS, EBX, 27, NULL, NULL, NULL, "collaborative processor performance control"),
    X("amd_psfd", 0x80000008, NS, EBX, 28, "amd-psfd", "amd-psfd", NULL, "AMD predictive store forwarding disable"),
    X("btc_no", 0x80000008, NS, EBX, 29, NULL, NULL, NULL, "not affected by branch type confusion"),
    X("amd_ibpb_ret", 0x80000008, NS, EBX, 30, NULL, NULL, "amd_ibpb", "IBPB clears return address predictor"),
    X("brs", 0x80000008, NS, EBX, 31, NULL, NULL, NULL, "AMD branch sampling"),

    /* ---- CPUID 0x8000000a EDX, AMD SVM (Linux word 15) ---- */
    X("npt", 0x8000000a, NS, EDX, 0, "npt", "npt", "svm", "nested page tables"),
    X("lbrv", 0x8000000a, NS, EDX, 1, "lbrv", "lbrv", "svm", "LBR virtualisation"),
    X("svm_lock", 0x8000000a, NS, EDX, 2, "svm-lock", "svm-lock", "svm", "SVM locking MSR"),
    X("nrip_save", 0x8000000a, NS, EDX, 3, "nrip-save", "nrip-save", "svm", "SVM next RIP save"),
    X("tsc_scale", 0x8000000a, NS, EDX, 4, "tsc-scale", "tsc-scale", "svm", "TSC scaling"),
    X("vmcb_clean", 0x8000000a, NS, EDX, 5, "vmcb-clean", "vmcb-clean", "svm", "VMCB clean bits"),
    X("flushbyasid", 0x8000000a, NS, EDX, 6, "flushbyasid", "flushbyasid", "svm", "flush by ASID"),
    X("decodeassists", 0x8000000a, NS, EDX, 7, "decodeassists", "decodeassists", "svm", "decode assists"),
    X("pausefilter", 0x8000000a, NS, EDX, 10, "pause-filter", "pause-filter", "svm", "filtered PAUSE intercept"),
    X("pfthreshold", 0x8000000a, NS, EDX, 12, "pfthreshold", "pfthreshold", "svm", "PAUSE filter threshold"),
    X("avic", 0x8000000a, NS, EDX, 13, "avic", "avic", "svm", "AMD virtual interrupt controller"),
    X("v_vmsave_vmload", 0x8000000a, NS, EDX, 15, "v-vmsave-vmload", "v-vmsave-vmload", "svm", "virtual VMSAVE/VMLOAD"),
    X("vgif", 0x8000000a, NS, EDX, 16, "vgif", "vgif", "svm", "virtual GIF"),
    X("x2avic", 0x8000000a, NS, EDX, 18, NULL, NULL, "avic", "virtual x2APIC"),
    X("v_spec_ctrl", 0x8000000a, NS, EDX, 20, NULL, NULL, "svm", "virtual SPEC_CTRL"),
    X("vnmi", 0x8000000a, NS, EDX, 25, "vnmi", NULL, "svm", "virtual NMI"),
    X("svme_addr_chk", 0x8000000a, NS, EDX, 28, "svme-addr-chk", "svme-addr-chk", "svm", "SVME address check"),

    /* ---- CPUID 0x8000001f EAX, AMD memory encryption (Linux word 19) ---- */
    X("sme", 0x8000001f, NS, EAX, 0, NULL, NULL, NULL, "AMD secure memory encryption"),
    X("sev", 0x8000001f, NS, EAX, 1, NULL, NULL, "svm", "AMD secure encrypted virtualisation"),
    X("vm_page_flush", 0x8000001f, NS, EAX, 2, NULL, NULL, NULL, "VM page flush MSR"),
    X("sev_es", 0x8000001f, NS, EAX, 3, NULL, NULL, "sev", "SEV encrypted state"),
    X("sev_snp", 0x8000001f, NS, EAX, 4, NULL, NULL, "sev_es", "SEV secure nested paging"),
    X("v_tsc_aux", 0x8000001f, NS, EAX, 9, NULL, NULL, NULL, "virtual TSC_AUX"),
    X("sme_coherent", 0x8000001f, NS, EAX, 10, NULL, NULL, NULL, "hardware-enforced cache coherency"),
    X("debug_swap", 0x8000001f, NS, EAX, 14, NULL, NULL, "sev_es", "SEV-ES full debug state swap"),
    X("rmpread", 0x8000001f, NS, EAX, 21, NULL, NULL, "sev_snp", "RMPREAD"),
    X("segmented_rmp", 0x8000001f, NS, EAX, 23, NULL, NULL, "sev_snp", "segmented RMP"),
    X("svsm", 0x8000001f, NS, EAX, 28, NULL, NULL, "sev_snp", "SVSM present"),
    X("hv_inuse_wr_allowed", 0x8000001f, NS, EAX, 30, NULL, NULL, "sev_snp", "writes to in-use hypervisor pages allowed"),

    /* ---- CPUID 0x80000021 EAX, AMD extended feature 2 (Linux word 20) ---- */
    X("no_nested_data_bp", 0x80000021, NS, EAX, 0, "no-nested-data-bp", NULL, NULL, "no nested data breakpoints"),
    X("wrmsr_xx_base_ns", 0x80000021, NS, EAX, 1, NULL, NULL, NULL, "non-serialising WRMSR to FS/GS base"),
    X("lfence_rdtsc", 0x80000021, NS, EAX, 2, "lfence-always-serializing", NULL, NULL, "LFENCE always serialising"),
    X("null_sel_clr_base", 0x80000021, NS, EAX, 6, "null-sel-clr-base", NULL, NULL, "null selector clears base"),
    X("autoibrs", 0x80000021, NS, EAX, 8, "auto-ibrs", "auto-ibrs", NULL, "automatic IBRS"),
    X("no_smm_ctl_msr", 0x80000021, NS, EAX, 9, NULL, NULL, NULL, "SMM_CTL MSR not present"),
    X("sbpb", 0x80000021, NS, EAX, 27, "sbpb", NULL, NULL, "selective branch prediction barrier"),
    X("ibpb_brtype", 0x80000021, NS, EAX, 28, "ibpb-brtype", NULL, NULL, "IBPB flushes all branch types"),
    X("srso_no", 0x80000021, NS, EAX, 29, "srso-no", NULL, NULL, "not affected by SRSO"),
    X("srso_user_kernel_no", 0x80000021, NS, EAX, 30, "srso-user-kernel-no", NULL, NULL, "not affected by SRSO across user/kernel"),
    X("srso_bp_spec_reduce", 0x80000021, NS, EAX, 31, NULL, NULL, NULL, "BpSpecReduce mitigates SRSO for VMs"),

    /* ---- CPUID 0x80000020 EBX / 0x80000022 EAX (AMD QoS, perfmon) ---- */
    X("smba", 0x80000020, 0, EBX, 2, NULL, NULL, NULL, "slow memory bandwidth allocation"),
    X("bmec", 0x80000020, 0, EBX, 3, NULL, NULL, "cqm_mbm_total cqm_mbm_local", "bandwidth monitoring event configuration"),
    X("perfmon_v2", 0x80000022, NS, EAX, 0, "perfmon-v2", NULL, NULL, "AMD performance monitoring v2"),
    X("amd_lbr_v2", 0x80000022, NS, EAX, 1, NULL, NULL, NULL, "AMD last branch record v2"),
    X("amd_lbr_pmc_freeze", 0x80000022, NS, EAX, 2, NULL, NULL, "amd_lbr_v2", "AMD LBR and PMC freeze"),
};

const size_t ks_feature__table_len = sizeof ks_feature__table / sizeof ks_feature__table[0];

/* Ids are bits of a ks_featset. */
_Static_assert(sizeof ks_feature__table / sizeof ks_feature__table[0] <= KS_FEATSET_BITS,
               "feature catalogue outgrew KS_FEATSET_BITS");

/*
 * Groups: names are stable API (requests name them).  Members are canonical
 * names or "prefix*" (every canonical name of the group's arch that starts so).
 * A group never has the name of a feature of another arch than its own unless
 * it is spelled "arm64_<name>" (found by the arch-aware calls).
 */
const ks_feature__group ks_feature__groups[] = {
    {"sse", KS_ARCH_X86_64, "sse sse2 pni ssse3 sse4_1 sse4_2"},
    {"avx-family", KS_ARCH_X86_64, "avx avx2 fma f16c"},
    {"avx512", KS_ARCH_X86_64, "avx512*"},
    {"aes", KS_ARCH_X86_64, "aes vaes"},
    {"sha", KS_ARCH_X86_64, "sha_ni sha512"},
    {"amx", KS_ARCH_X86_64, "amx_*"},
    {"bmi", KS_ARCH_X86_64, "bmi1 bmi2"},
    {"vnni", KS_ARCH_X86_64, "avx512_vnni avx_vnni avx_vnni_int8 avx_vnni_int16"},
    {"crypto", KS_ARCH_X86_64, "aes pclmulqdq sha_ni vaes vpclmulqdq gfni sha512 sm3 sm4"},
    {"avx10-family", KS_ARCH_X86_64, "avx10 avx10_128 avx10_256 avx10_512"},
    {"x86-64-v2", KS_ARCH_X86_64, "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"},
    {"x86-64-v3", KS_ARCH_X86_64, "avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"},
    {"x86-64-v4", KS_ARCH_X86_64, "avx512f avx512bw avx512cd avx512dq avx512vl"},
    {"sve", KS_ARCH_ARM64, "sve*"},
    {"arm64_crypto", KS_ARCH_ARM64, "arm64_aes pmull sha1 sha2 sha3 arm64_sha512 arm64_sm3 arm64_sm4"},
    {"arm64_sha", KS_ARCH_ARM64, "sha1 sha2 sha3 arm64_sha512 svesha3"},
    {"sme-family", KS_ARCH_ARM64, "arm64_sme sme*"},
    {"mte-family", KS_ARCH_ARM64, "mte mte3"},
    {"pauth", KS_ARCH_ARM64, "paca pacg"},
};

const size_t ks_feature__groups_len = sizeof ks_feature__groups / sizeof ks_feature__groups[0];

/*
 * Extra spellings accepted by ks_feature_lookup() beyond each row's canonical,
 * QEMU and libvirt names (QEMU's own aliases, common marketing names).
 */
const ks_feature__alias ks_feature__aliases[] = {
    {"sse3", "pni"},
    {"lzcnt", "abm"},
    {"xd", "nx"},
    {"i64", "lm"},
    {"ffxsr", "fxsr_opt"},
    {"pclmul", "pclmulqdq"},
};

const size_t ks_feature__aliases_len = sizeof ks_feature__aliases / sizeof ks_feature__aliases[0];
