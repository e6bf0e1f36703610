/*
 * fuzz_feature.c - the feature-name parsers of the catalogue: ks_feature_lookup,
 * ks_feature_lookup_arch, ks_feature_add_name(_arch), ks_feature_from_cpuinfo
 * and ks_featset_from_json.
 *
 * Input: byte 0 picks the arch (bit 0: x86_64 / aarch64); the rest, up to the
 * first NUL, is a /proc/cpuinfo-like list of words.  Properties:
 *   - from_cpuinfo only sets features of the arch, and the canonical names of
 *     what it set parse back to the same set with no unknown word;
 *   - a name that looks up resolves to an id whose canonical name resolves to
 *     the same id, and so do its upper-case and '-'/'_'/'.' spellings (the
 *     header promises case-insensitivity and that equivalence); add_name of it
 *     adds exactly that id;
 *   - a name add_name accepts but lookup refuses is a group;
 *   - arch-aware calls only ever yield features of that arch;
 *   - ks_featset_from_json of the words as a JSON array succeeds exactly when
 *     every word is accepted by add_name, gives the union of their sets, and
 *     round-trips through ks_featset_to_json;
 *   - the dependents closure contains its input and is idempotent.
 */
#include <string.h>

#include <jansson.h>

#include "ks_feature.h"
#include "ks_fuzz.h"
#include "ks_report.h"

#define MAX_WORDS 64
#define WORD_MAX 256

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsigned id;
    (void)ks_feature_lookup("sse2", &id, NULL);
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* `word` spelled another way the catalogue must treat as the same name. */
static void respell(char *out, const char *word, int how)
{
    size_t i = 0;
    for (; word[i]; i++) {
        char c = word[i];
        if (how == 0 && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (how == 1 && (c == '_' || c == '.'))
            c = '-';
        else if (how == 2 && (c == '-' || c == '_'))
            c = '.';
        out[i] = c;
    }
    out[i] = '\0';
}

static void check_word(const char *word, ks_arch arch, ks_featset *all_arch, ks_featset *unioned,
                       bool *all_ok)
{
    bool is_group_form = strncmp(word, KS_FEATURE_GROUP_PREFIX, KS_FEATURE_GROUP_PREFIX_LEN) == 0;
    unsigned id = 0;
    ks_err err = {0};
    ks_code rc = ks_feature_lookup(word, &id, &err);
    ks_featset s;
    ks_featset_clear(&s);
    ks_err aerr = {0};
    ks_code arc = ks_feature_add_name(&s, word, &aerr);
    if (arc == KS_OK)
        ks_featset_or(unioned, unioned, &s);
    else
        *all_ok = false;
    KS_FUZZ_CHECK(arc == KS_OK || (aerr.msg[0] && ks_featset_empty(&s)),
                  "add_name failed without a message or changed the set");
    if (rc == KS_OK) {
        KS_FUZZ_CHECK(id < ks_feature_count() && id < KS_FEATSET_BITS, "id %u out of range", id);
        unsigned id2 = 0;
        KS_FUZZ_CHECK(ks_feature_lookup(ks_feature_name(id), &id2, NULL) == KS_OK && id2 == id,
                      "canonical name of '%s' (%s) does not resolve back", word,
                      ks_feature_name(id));
        char other[WORD_MAX];
        for (int how = 0; how < 3; how++) {
            respell(other, word, how);
            id2 = UINT32_MAX;
            KS_FUZZ_CHECK(ks_feature_lookup(other, &id2, NULL) == KS_OK && id2 == id,
                          "'%s' is %u but '%s' is not", word, id, other);
        }
        if (!is_group_form) {
            ks_featset one;
            ks_featset_clear(&one);
            ks_featset_set(&one, id);
            KS_FUZZ_CHECK(arc == KS_OK && ks_featset_equal(&s, &one),
                          "add_name('%s') is not exactly feature %u", word, id);
        }
    } else {
        KS_FUZZ_CHECK(rc == KS_EINVAL && err.msg[0] != '\0', "lookup error without a message");
        if (arc == KS_OK && !is_group_form)
            KS_FUZZ_CHECK(ks_feature_group_find(word) >= 0,
                          "add_name accepted '%s', neither a feature nor a group", word);
    }

    unsigned aid = 0;
    if (ks_feature_lookup_arch(arch, word, &aid, NULL) == KS_OK) {
        const ks_feature_info *fi = ks_feature_get(aid);
        KS_FUZZ_CHECK(fi != NULL && fi->arch == arch, "lookup_arch('%s') gave another arch", word);
    }
    ks_featset as;
    ks_featset_clear(&as);
    if (ks_feature_add_name_arch(&as, arch, word, NULL) == KS_OK)
        KS_FUZZ_CHECK(ks_featset_subset(&as, all_arch), "add_name_arch('%s') left the arch", word);
    else
        KS_FUZZ_CHECK(ks_featset_empty(&as), "failed add_name_arch changed the set");
}

static void check_cpuinfo(const char *text, ks_arch arch, const ks_featset *all_arch)
{
    ks_featset s, again;
    size_t n_unknown = 0;
    ks_feature_from_cpuinfo(&s, arch, text, &n_unknown);
    KS_FUZZ_CHECK(ks_featset_subset(&s, all_arch), "from_cpuinfo set a foreign feature");
    /* Canonical names, space-separated: at most 512 names of < 64 bytes. */
    static char buf[KS_FEATSET_BITS * 64];
    size_t len = 0;
    for (int b = ks_featset_next(&s, 0); b >= 0; b = ks_featset_next(&s, (unsigned)b + 1)) {
        const char *n = ks_feature_name((unsigned)b);
        size_t nl = strlen(n);
        KS_FUZZ_CHECK(len + nl + 2 < sizeof(buf), "name list overflow");
        memcpy(buf + len, n, nl);
        len += nl;
        buf[len++] = ' ';
    }
    buf[len] = '\0';
    ks_feature_from_cpuinfo(&again, arch, buf, &n_unknown);
    KS_FUZZ_CHECK(ks_featset_equal(&s, &again) && n_unknown == 0,
                  "canonical names do not parse back (%zu unknown): %s", n_unknown, buf);

    ks_featset closure, closure2;
    ks_feature_dependents_closure(&closure, &s);
    KS_FUZZ_CHECK(ks_featset_subset(&s, &closure), "closure lost its input");
    ks_feature_dependents_closure(&closure2, &closure);
    KS_FUZZ_CHECK(ks_featset_equal(&closure, &closure2), "closure not idempotent");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > KS_FUZZ_MAX_INPUT)
        return 0;
    ks_arch arch = (data[0] & 1) ? KS_ARCH_ARM64 : KS_ARCH_X86_64;
    size_t n = strnlen((const char *)data + 1, size - 1);
    char *text = malloc(n + 1);
    KS_FUZZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data + 1, n);
    text[n] = '\0';

    ks_featset all_arch;
    ks_feature_all_of_arch(arch, &all_arch);
    check_cpuinfo(text, arch, &all_arch);

    json_t *arr = json_array();
    KS_FUZZ_CHECK(arr != NULL, "out of memory");
    ks_featset unioned;
    ks_featset_clear(&unioned);
    bool all_ok = true, json_ok = true;
    size_t n_words = 0;
    for (const char *p = text; *p && n_words < MAX_WORDS;) {
        while (*p && is_space(*p))
            p++;
        const char *w = p;
        while (*p && !is_space(*p))
            p++;
        size_t wl = (size_t)(p - w);
        if (wl == 0 || wl >= WORD_MAX)
            continue;
        char word[WORD_MAX];
        memcpy(word, w, wl);
        word[wl] = '\0';
        n_words++;
        check_word(word, arch, &all_arch, &unioned, &all_ok);
        json_t *js = json_stringn(word, wl); /* NULL for invalid UTF-8 */
        if (js)
            json_array_append_new(arr, js);
        else
            json_ok = false;
    }

    if (json_ok) {
        ks_featset s;
        ks_err err = {0};
        ks_code rc = ks_featset_from_json(&s, arr, "f", &err);
        KS_FUZZ_CHECK((rc == KS_OK) == all_ok, "featset_from_json %s but add_name %s",
                      rc == KS_OK ? "accepts" : "refuses", all_ok ? "accepts" : "refuses");
        if (rc == KS_OK) {
            KS_FUZZ_CHECK(ks_featset_equal(&s, &unioned), "featset_from_json != union of names");
            json_t *back = ks_featset_to_json(&s);
            ks_featset s2;
            KS_FUZZ_CHECK(back && ks_featset_from_json(&s2, back, "g", NULL) == KS_OK &&
                              ks_featset_equal(&s, &s2),
                          "featset JSON round trip");
            json_decref(back);
        } else {
            KS_FUZZ_CHECK(err.msg[0] != '\0' && err.field[0] == 'f', "error without field");
        }
    }
    json_decref(arr);
    free(text);
    return 0;
}
