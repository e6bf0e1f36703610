/*
 * ks_vm_int.h - private to libks-common: what the text decoders of
 * ks_vm_fast.c share with ks_vm.c (the vcpus lexer, the checks of text-decoded
 * vcpus and the plan cache's decoded "features" members).  Not a contract.
 */
#ifndef KS_VM_INT_H
#define KS_VM_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "ks_vm.h"

#define KS_VM_DEFAULT_MEMORY_MIB 1024
#define KS_VM_MAX_MEMORY_MIB (UINT64_C(1) << 32) /* 4 PiB: far above any host, below overflow */
#define KS_VM_MAX_MHZ 1000000u
#define KS_VM_MAX_EVENTS 256

/* The "vcpus" array's text at p (up to end) decoded into out[] (room for
 * KS_VM_MAX_VCPUS); *after = past its ']'.  false on anything unusual. */
bool ks_vm__lex_vcpus(const char *p, const char *end, ks_plan_vcpu *out, uint32_t *n_out,
                      const char **after);
/* Text-decoded vcpus pass every check decode_plan_vcpus makes (p's n_vcpus
 * and topology set). */
bool ks_vm__pre_vcpus_valid(const ks_plan *p, const ks_plan_vcpu *pre);
/* The cache's scratch room for KS_VM_MAX_VCPUS vcpus. */
ks_plan_vcpu *ks_vm__cache_vcpus(ks_plan_cache *c);
/* The "features" member's value at fs, decoded once per distinct text; *after
 * = past it.  false when it is not an object that decodes. */
bool ks_vm__cache_features(ks_plan_cache *c, const char *fs, const char *end, const char **after,
                           char *model, size_t model_cap, ks_featset *visible,
                           ks_featset *disable);

/* A plain JSON integer (what jansson accepts as one: no fraction, no
 * exponent, within int64, no leading zeros) at *pp; *pp = past it. */
bool ks_vm__lex_int(const char **pp, const char *end, int64_t *out);

/* ks_vm_fast.c: a plan's whole text decoded without building JSON values.
 * true = *out is exactly what ks_plan_from_json would give; false = unusual
 * or refused text, nothing allocated: the caller decodes it the plain way. */
bool ks_vm__plan_fast(ks_plan **out, const char *text, size_t len, ks_plan_cache *cache);
/* The same for a VM request (ks_vm_request_from_json). */
bool ks_vm__request_fast(ks_vm_request **out, const char *text, size_t len);

#endif
