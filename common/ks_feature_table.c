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
    X("cmov", 1, NS, EDX, 15, "cmov", "cmov", NULL, "CMOV instructions"),
    X("pat", 1, NS, EDX, 16, "pat", "pat", NULL, "page attribute table"),
    X("pse36", 1, NS, EDX, 17, "pse36", "pse36", NULL, "36-bit PSEs"),
    X("pn", 1, NS, EDX, 18, "pn", "pn", NULL, "processor serial number"),
    X("clflush", 1, NS, EDX, 19, "clflush", "clflush", NULL, "CLFLUSH instruction"),
    X("dts", 1, NS, EDX, 21, "ds", "ds", NULL, "debug store"),
    X("acpi", 1, NS, EDX, 22, "acpi", "acpi", NULL, "ACPI via MSR"),
    X("mmx", 1, NS, EDX, 23, "mmx", "mmx", NULL, "MMX"),
    X("fxsr", 1, NS, EDX, 24, "fxsr", "fxsr", NULL, "FXSAVE/FXRSTOR"),
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
    X("f16c", 1, NS, ECX, 29, "f16c", "f16c", "avx", "half-precision conversions"),
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
    X("fdp_excptn_only", 7, 0, EBX, 6, NULL, "fdp-excptn-only", NULL, "FPU data pointer updated only on x87 exceptions"),
    X("smep", 7, 0, EBX, 7, "smep", "smep", NULL, "supervisor mode execution protection"),
    X("bmi2", 7, 0, EBX, 8, "bmi2", "bmi2", NULL, "bit manipulation 2"),
    X("erms", 7, 0, EBX, 9, "erms", "erms", NULL, "enhanced REP MOVSB/STOSB"),
    X("invpcid", 7, 0, EBX, 10, "invpcid", "invpcid", "pcid", "INVPCID"),
    X("rtm", 7, 0, EBX, 11, "rtm", "rtm", NULL, "restricted transactional memory"),
    X("cqm", 7, 0, EBX, 12, NULL, "cmt", NULL, "cache QoS monitoring"),
    X("zero_fcs_fds", 7, 0, EBX, 13, NULL, "zero-fcs-fds", NULL, "FPU CS and DS deprecated"),
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
    X("avx512_bf16", 7, 1, EAX, 5, "avx512-bf16", "avx512-bf16", "avx512vl avx512bw", "AVX-512 BFLOAT16"),

    /* ---- CPUID 7.0 ECX (Linux word 16) ---- */
    X("avx512vbmi", 7, 0, ECX, 1, "avx512vbmi", "avx512vbmi", "avx512bw", "AVX-512 vector byte manipulation"),
    X("umip", 7, 0, ECX, 2, "umip", "umip", NULL, "user mode instruction protection"),
    X("pku", 7, 0, ECX, 3, "pku", "pku", NULL, "protection keys for user pages"),
    X("ospke", 7, 0, ECX, 4, NULL, "ospke", "pku", "protection keys enabled by the OS"),
    X("waitpkg", 7, 0, ECX, 5, "waitpkg", "waitpkg", NULL, "UMONITOR/UMWAIT/TPAUSE"),
    X("avx512_vbmi2", 7, 0, ECX, 6, "avx512vbmi2", "avx512-vbmi2", "avx512bw", "AVX-512 VBMI2"),
    X("shstk", 7, 0, ECX, 7, NULL, NULL, "xsaves", "CET shadow stack"),
    X("gfni", 7, 0, ECX, 8, "gfni", "gfni", "sse2", "Galois field new instructions"),
    X("vaes", 7, 0, ECX, 9, "vaes", "vaes", "avx aes", "vector AES"),
    X("vpclmulqdq", 7, 0, ECX, 10, "vpclmulqdq", "vpclmulqdq", "avx pclmulqdq", "vector carry-less multiplication"),
    X("avx512_vnni", 7, 0, ECX, 11, "avx512vnni", "avx512vnni", "avx512f", "AVX-512 VNNI"),
    X("avx512_bitalg", 7, 0, ECX, 12, "avx512bitalg", "avx512bitalg", "avx512bw", "AVX-512 BITALG"),
    X("tme", 7, 0, ECX, 13, NULL, NULL, NULL, "total memory encryption"),
    X("avx512_vpopcntdq", 7, 0, ECX, 14, "avx512-vpopcntdq", "avx512-vpopcntdq", "avx512f", "AVX-512 VPOPCNTD/Q"),
    X("la57", 7, 0, ECX, 16, "la57", "la57", NULL, "5-level paging"),
    X("rdpid", 7, 0, ECX, 22, "rdpid", "rdpid", NULL, "RDPID"),
    X("bus_lock_detect", 7, 0, ECX, 24, "bus-lock-detect", NULL, NULL, "bus lock detection"),
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
    X("pconfig", 7, 0, EDX, 18, NULL, NULL, NULL, "PCONFIG"),
    X("arch_lbr", 7, 0, EDX, 19, "arch-lbr", "arch-lbr", NULL, "architectural LBRs"),
    X("ibt", 7, 0, EDX, 20, NULL, NULL, "xsaves", "CET indirect branch tracking"),
    X("amx_bf16", 7, 0, EDX, 22, "amx-bf16", "amx-bf16", "amx_tile", "AMX BFLOAT16"),
    X("avx512_fp16", 7, 0, EDX, 23, "avx512-fp16", "avx512-fp16", "avx512bw avx512dq avx512vl", "AVX-512 FP16"),
    X("amx_tile", 7, 0, EDX, 24, "amx-tile", "amx-tile", "xfd", "AMX tile registers"),
    X("amx_int8", 7, 0, EDX, 25, "amx-int8", "amx-int8", "amx_tile", "AMX INT8"),
    X("spec_ctrl", 7, 0, EDX, 26, "spec-ctrl", "spec-ctrl", NULL, "IBRS and IBPB"),
    X("intel_stibp", 7, 0, EDX, 27, "stibp", "stibp", "spec_ctrl", "single thread indirect branch predictors"),
    X("flush_l1d", 7, 0, EDX, 28, NULL, NULL, NULL, "L1D flush MSR"),
    X("arch_capabilities", 7, 0, EDX, 29, "arch-capabilities", "arch-capabilities", NULL, "IA32_ARCH_CAPABILITIES MSR"),
    X("core_capabilities", 7, 0, EDX, 30, "core-capability", "core-capability", NULL, "IA32_CORE_CAPABILITIES MSR"),
    X("spec_ctrl_ssbd", 7, 0, EDX, 31, "ssbd", "ssbd", NULL, "speculative store bypass disable"),

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
    {"x86-64-v2", KS_ARCH_X86_64, "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"},
    {"x86-64-v3", KS_ARCH_X86_64, "avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"},
    {"x86-64-v4", KS_ARCH_X86_64, "avx512f avx512bw avx512cd avx512dq avx512vl"},
    {"sve", KS_ARCH_ARM64, "sve*"},
    {"arm64_crypto", KS_ARCH_ARM64, "arm64_aes pmull sha1 sha2 sha3 arm64_sha512 arm64_sm3 arm64_sm4"},
    {"arm64_aes", KS_ARCH_ARM64, "arm64_aes sveaes"},
    {"arm64_sha", KS_ARCH_ARM64, "sha1 sha2 sha3 arm64_sha512 svesha3"},
    {"sme", KS_ARCH_ARM64, "sme*"},
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
    {"sha", "sha_ni"},
    {"pclmul", "pclmulqdq"},
    {"avx512vnni", "avx512_vnni"},
    {"avx512vbmi2", "avx512_vbmi2"},
    {"avx512bitalg", "avx512_bitalg"},
};

const size_t ks_feature__aliases_len = sizeof ks_feature__aliases / sizeof ks_feature__aliases[0];
