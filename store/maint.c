// SPDX-License-Identifier: GPL-2.0
/*
 * maint.c - gc, list, delete and reshard: they need no key, only the
 * clear, authenticated-by-the-owner part of every manifest (block IDs,
 * which reveal no content, names, sizes, times)
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cmd.h"
#include "store.h"
#include "util.h"

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Where gc's live-block table goes when the set outgrows its memory bound:
 * a directory store's own directory (sized for the store), for RADOS
 * $TMPDIR or /var/tmp; $VMRESET_STORE_GC_TMP overrides both.
 */
static const char *gc_tmpdir(const struct vmrs_store *s)
{
	const char *e = getenv("VMRESET_STORE_GC_TMP");

	if (e && *e)
		return e;
	if (!s->rados)
		return s->root;
	e = getenv("TMPDIR");
	return e && *e ? e : "/var/tmp";
}

int cmd_gc(const char *store, const struct vmrs_opts *o)
{
	struct vmrs_store s = { .lock_fd = -1 };
	struct vmrs_live *live = NULL;
	struct vmrs_gc_stats st;
	uint64_t nrefs = 0;
	char **names = NULL;
	int ret = 1, n = -1;

	(void)o;
	/*
	 * Exclusive: saves hold the lock shared from their first block to
	 * their manifest's rename, so nothing gc finds unreferenced is about
	 * to be referenced.
	 */
	if (vmrs_store_open(&s, store, true))
		goto out;
	live = vmrs_live_new(gc_tmpdir(&s), vmrs_live_bound());
	if (!live) {
		vmrs_err("gc: %s", strerror(ENOMEM));
		goto out;
	}
	n = vmrs_manifest_names(&s, &names);
	if (n < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		uint8_t (*ids)[VMRS_HASH_LEN];
		struct vmrs_mhdr h;
		int r;

		/* An unreadable manifest must stop gc, or its blocks would go. */
		if (vmrs_manifest_header(&s, names[i], &h, &ids, NULL)) {
			vmrs_err("gc: manifest '%s' cannot be read: stopped, nothing removed (if it "
				 "is damaged for good, 'vmreset-store delete --force %s %s' removes "
				 "it)", names[i], store, names[i]);
			goto out;
		}
		/*
		 * So must a missing base: its blocks are listed only in its own
		 * manifest, and gc would make the dependent unrecoverable even
		 * once the base is put back.
		 */
		if (h.base[0] && !bsearch(&(const char *){ h.base }, names, (size_t)n,
					  sizeof(*names), cmp_name)) {
			vmrs_err("gc: manifest '%s' is based on '%s', which is missing: stopped, "
				 "nothing removed (put '%s' back, or delete '%s')", names[i], h.base,
				 h.base, names[i]);
			free(ids);
			goto out;
		}
		r = vmrs_live_add(live, (const uint8_t (*)[VMRS_HASH_LEN])ids, h.nrefs);
		nrefs += h.nrefs;
		free(ids);
		if (r) {
			vmrs_err("gc: stopped, nothing removed");
			goto out;
		}
	}
	if (vmrs_live_seal(live)) {
		vmrs_err("gc: stopped, nothing removed");
		goto out;
	}
	if (vmrs_live_spilled(live))
		fprintf(stderr, "gc '%s': %" PRIu64 " block references over the memory bound "
			"(VMRESET_STORE_GC_MEM): live blocks kept in a table in '%s'\n", store,
			nrefs, gc_tmpdir(&s));
	if (vmrs_index_gc(&s, live, &st))
		goto out;
	st.tmps += vmrs_manifest_tmps_remove(&s);
	printf("gc '%s': removed %" PRIu64 " blocks, %" PRIu64 " packs, rewrote %" PRIu64
	       " packs, freed %" PRIu64 " bytes, removed %" PRIu64 " temporary files; kept %"
	       PRIu64 " blocks\n", store, st.blocks_removed, st.packs_removed,
	       st.packs_rewritten, st.bytes_freed, st.tmps, st.blocks_kept);
	ret = 0;
out:
	if (n > 0)
		vmrs_names_free(names, n);
	vmrs_live_free(live);
	vmrs_store_close(&s);
	return ret;
}

int cmd_delete(const char *store, const char *name, const struct vmrs_opts *o)
{
	struct vmrs_store s = { .lock_fd = -1 };
	char dep[VMRS_MAX_NAME + 1];
	struct vmrs_mhdr h;
	bool unread = false;
	int ret = 1, r, lock = -1;

	if (!vmrs_name_ok(name)) {
		vmrs_err("bad snapshot name '%s'", name);
		return 2;
	}
	if (vmrs_store_open(&s, store, false))
		goto out;
	/*
	 * A manifest whose header cannot be read stops gc; --force removes
	 * it unread. Not by default: a newer tool's format or a passing read
	 * error look the same from here, and the snapshot would be gone.
	 */
	if (vmrs_manifest_header(&s, name, &h, NULL, NULL)) {
		if (!vmrs_manifest_exists(&s, name))
			goto out;
		if (!o->force) {
			vmrs_err("'%s' not deleted: its manifest cannot be read (--force removes "
				 "it unread)", name);
			goto out;
		}
		unread = true;
	}
	lock = vmrs_manifest_lock(&s);
	if (lock < 0) {
		vmrs_err("'%s': manifests lock: %s", store, strerror(-lock));
		goto out;
	}
	r = vmrs_dependents(&s, name, dep, sizeof(dep));
	if (r) {
		if (r > 0)
			vmrs_err("'%s' is the base of '%s'%s: delete %s first", name, dep,
				 r > 1 ? " and others" : "", r > 1 ? "those" : "it");
		goto out;
	}
	r = vmrs_manifest_remove(&s, name);
	if (r) {
		vmrs_err("deleting '%s' from '%s': %s", name, store, r == -ENOLCK ?
			 vmrs_rados_lost_msg(-EBUSY) : vmrs_store_strerror(&s, r));
		goto out;
	}
	printf("deleted '%s'%s; 'vmreset-store gc %s' frees the blocks nothing else uses\n",
	       name, unread ? " (unread: --force)" : "", store);
	ret = 0;
out:
	vmrs_manifest_unlock(&s, lock);
	vmrs_store_close(&s);
	return ret;
}

static void human(uint64_t v, char *buf, size_t len)
{
	const char *u = "BKMGTP";
	double d = (double)v;

	while (d >= 1024 && u[1]) {
		d /= 1024;
		u++;
	}
	if (*u == 'B')
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%.1f%c", d, *u);
}

static void age(uint64_t secs, char *buf, size_t len)
{
	if (secs < 120)
		snprintf(buf, len, "%" PRIu64 "s", secs);
	else if (secs < 7200)
		snprintf(buf, len, "%" PRIu64 "m", secs / 60);
	else if (secs < 172800)
		snprintf(buf, len, "%" PRIu64 "h", secs / 3600);
	else
		snprintf(buf, len, "%" PRIu64 "d", secs / 86400);
}

static int put(json_object *o, const char *k, json_object *v)
{
	return v ? json_object_object_add(o, k, v) : -1;
}

int cmd_list(const char *store, const struct vmrs_opts *o)
{
	struct vmrs_store s = { .lock_fd = -1 };
	json_object *root = NULL, *arr = NULL;
	uint64_t now = (uint64_t)time(NULL), total = 0;
	char **names = NULL;
	int n = -1, ret = 1, err = 0;

	if (vmrs_store_open(&s, store, false))
		goto out;
	n = vmrs_manifest_names(&s, &names);
	if (n < 0)
		goto out;
	if (o->json) {
		root = json_object_new_object();
		arr = json_object_new_array();
		if (!root || !arr)
			goto out;
		err |= put(root, "store", json_object_new_string(store));
		err |= put(root, "block_size", json_object_new_int64(s.block_size));
		err |= put(root, "copies", json_object_new_int64(s.copies));
		err |= put(root, "salt", json_object_new_string(vmrs_salt_names[s.salt_mode]));
	} else {
		printf("%-24s %5s %10s %10s %6s %s\n", "NAME", "SEQ", "SIZE", "STORED", "AGE", "BASE");
	}
	for (int i = 0; i < n; i++) {
		uint8_t (*ids)[VMRS_HASH_LEN];
		char when[32] = "", sz[32], stb[32], ag[32];
		uint64_t fsize, stored;
		struct vmrs_mhdr h;
		time_t t;

		if (vmrs_manifest_header(&s, names[i], &h, &ids, &fsize)) {
			err = 1;
			continue;
		}
		/* What this snapshot added: its new blocks and its manifest. */
		stored = vmrs_index_bytes(&s, ids, h.nrefs) + fsize;
		free(ids);
		total += stored;
		t = (time_t)h.time;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		if (o->json) {
			json_object *e = json_object_new_object();

			if (!e || json_object_array_add(arr, e)) {
				json_object_put(e);
				err = 1;
				continue;
			}
			err |= put(e, "name", json_object_new_string(names[i]));
			err |= put(e, "seq", json_object_new_int64((int64_t)h.seq));
			err |= put(e, "saved", json_object_new_string(when));
			err |= put(e, "age_seconds",
				   json_object_new_int64(now > h.time ? (int64_t)(now - h.time) : 0));
			err |= put(e, "size", json_object_new_int64((int64_t)h.size));
			err |= put(e, "stored_bytes", json_object_new_int64((int64_t)stored));
			err |= put(e, "manifest_bytes", json_object_new_int64((int64_t)fsize));
			err |= put(e, "blocks", json_object_new_int64((int64_t)h.nrefs));
			if (h.base[0])
				err |= put(e, "base", json_object_new_string(h.base));
			else
				err |= json_object_object_add(e, "base", NULL);
			err |= put(e, "chain", json_object_new_int64(h.depth));
		} else {
			human(h.size, sz, sizeof(sz));
			human(stored, stb, sizeof(stb));
			age(now > h.time ? now - h.time : 0, ag, sizeof(ag));
			printf("%-24s %5" PRIu64 " %10s %10s %6s %s\n", names[i], h.seq, sz, stb, ag,
			       h.base[0] ? h.base : "-");
		}
	}
	if (o->json) {
		const char *txt;

		err |= put(root, "snapshots", arr);
		arr = NULL;
		err |= put(root, "blocks", json_object_new_int64((int64_t)vmrs_index_count(&s)));
		err |= put(root, "stored_bytes", json_object_new_int64((int64_t)total));
		err |= put(root, "index_bytes",
			   json_object_new_int64((int64_t)vmrs_index_bytes_used(&s)));
		txt = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE);
		if (!txt || err)
			goto out;
		puts(txt);
	} else {
		char tb[32];

		human(total, tb, sizeof(tb));
		printf("%d snapshots; %" PRIu64 " blocks, %s stored\n", n, vmrs_index_count(&s), tb);
	}
	if (fflush(stdout) || ferror(stdout)) {
		vmrs_err("writing the list: %s", strerror(errno));
		goto out;
	}
	ret = err ? 1 : 0;
out:
	if (n > 0)
		vmrs_names_free(names, n);
	json_object_put(arr);
	json_object_put(root);
	vmrs_store_close(&s);
	return ret;
}

int cmd_reshard(const char *store, unsigned int nshards, const struct vmrs_opts *o)
{
	struct vmrs_store s = { .lock_fd = -1 };
	struct vmrs_reshard_stats st;
	int ret = 1;

	(void)o;
	if (!vmrs_is_rados(store)) {
		vmrs_err("reshard: '%s' is a directory store, whose index is one LMDB file; only "
			 "rados:// stores have index shards", store);
		return 2;
	}
	/* Exclusive, as gc: no save, load or list runs while the index moves. */
	if (vmrs_store_open(&s, store, true))
		goto out;
	if (vmrs_rados_shards(&s) == nshards) {
		printf("reshard '%s': already %u index shards, nothing to do\n", store, nshards);
		ret = 0;
		goto out;
	}
	if (vmrs_rados_reshard(&s, nshards, &st))
		goto out;
	printf("reshard '%s': %u index shards (generation %u) -> %u (generation %u), %" PRIu64
	       " entries moved", store, st.old_shards, st.old_gen, st.new_shards, st.new_gen,
	       st.moved);
	if (st.skipped)
		printf(", %" PRIu64 " malformed ones dropped", st.skipped);
	if (st.stale_removed)
		printf(", %" PRIu64 " shards of a killed reshard removed", st.stale_removed);
	printf("; the store is now version 3 (tools before reshard refuse it)\n");
	if (st.old_removed != st.old_shards)
		fprintf(stderr, "reshard '%s': %u old shards are left; gc removes them\n", store,
			st.old_shards - (unsigned int)st.old_removed);
	ret = 0;
out:
	vmrs_store_close(&s);
	return ret;
}
