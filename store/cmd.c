// SPDX-License-Identifier: GPL-2.0
/*
 * cmd.c - save, load, verify, gc and list, with the block work spread over
 * worker threads (one per core, two by default)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/vmreset.h>

#include "cmd.h"
#include "store.h"

enum job_op { OP_SAVE, OP_LOAD, OP_VERIFY };

struct job {
	enum job_op op;
	const char *what;
	struct vmrs_store *s;
	struct vmrs_manifest *m;
	int fd;
	bool write_zeros;
	bool partial;
	const uint8_t *salt;
	const uint8_t *dirty;		/* save: blocks to (re)encrypt; NULL = all */
	atomic_uint_fast64_t next;
	atomic_uint_fast64_t zero, written, dedup, stored, bytes;
	atomic_int errors;
	atomic_bool abort;
	pthread_mutex_t lock;
	double start, last;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int pread_all(int fd, uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int pwrite_all(int fd, const uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

static void block_error(struct job *j, uint64_t i, const char *why)
{
	char hex[2 * VMRS_HASH_LEN + 1];

	vmrs_hex(j->m->e[i].id, VMRS_HASH_LEN, hex);
	pthread_mutex_lock(&j->lock);
	vmrs_err("%s: block %" PRIu64 " (offset %" PRIu64 ", id %s): %s", j->what, i,
		 i * j->m->block_size, hex, why);
	pthread_mutex_unlock(&j->lock);
	atomic_fetch_add(&j->errors, 1);
	if (!j->partial)
		atomic_store(&j->abort, true);
}

static void progress(struct job *j, bool final)
{
	double t = now();
	uint64_t done = atomic_load(&j->bytes);

	if (!isatty(2) || (!final && t - j->last < 0.5) || t - j->start < 1)
		return;
	j->last = t;
	fprintf(stderr, "\r%s: %3d%% %" PRIu64 " MiB, %.0f MiB/s%s", j->what,
		(int)(j->m->size ? done * 100 / j->m->size : 100), done >> 20,
		done / (t - j->start) / 1048576, final ? "\n" : "");
}

static int do_block(struct job *j, uint64_t i, uint8_t *plain, uint8_t *sealed)
{
	struct vmrs_entry *e = &j->m->e[i];
	off_t off = (off_t)(i * j->m->block_size);
	size_t len = j->m->size - (uint64_t)off < j->m->block_size ?
		     j->m->size - (uint64_t)off : j->m->block_size;
	int ret;

	if (j->op == OP_SAVE) {
		if (j->dirty && !j->dirty[i])
			return 0;
		ret = pread_all(j->fd, plain, len, off);
		if (ret) {
			vmrs_err("%s: read at offset %jd: %s", j->what, (intmax_t)off,
				 strerror(-ret));
			return ret;
		}
		if (all_zero(plain, len)) {
			memset(e, 0, sizeof(*e));
			atomic_fetch_add(&j->zero, 1);
			return 0;
		}
		vmrs_block_key(j->salt, plain, len, e->key);
		if (vmrs_block_seal(e->key, plain, len, sealed, e->id))
			return -EIO;
		ret = vmrs_block_put(j->s, e->id, sealed, len + VMRS_TAG_LEN);
		if (ret < 0) {
			vmrs_err("%s: storing block %" PRIu64 ": %s", j->what, i, strerror(-ret));
			return ret;
		}
		if (ret) {
			atomic_fetch_add(&j->written, 1);
			atomic_fetch_add(&j->stored, len + VMRS_TAG_LEN);
		} else {
			atomic_fetch_add(&j->dedup, 1);
		}
		return 0;
	}

	if (vmrs_entry_is_zero(e)) {
		memset(plain, 0, len);
	} else {
		ret = vmrs_block_get(j->s, e->id, sealed, len + VMRS_TAG_LEN);
		if (ret == -ENOENT) {
			block_error(j, i, "missing from the store");
			return 0;
		}
		if (ret || vmrs_block_open(e->key, sealed, len, plain)) {
			block_error(j, i, "tampered (authentication failed)");
			return 0;
		}
	}
	if (j->op == OP_LOAD && (j->write_zeros || !vmrs_entry_is_zero(e))) {
		ret = pwrite_all(j->fd, plain, len, off);
		if (ret) {
			vmrs_err("%s: write at offset %jd: %s", j->what, (intmax_t)off,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	uint8_t *plain = malloc(j->m->block_size);
	uint8_t *sealed = malloc(j->m->block_size + VMRS_TAG_LEN);
	bool first = false;
	uint64_t i;

	if (!plain || !sealed) {
		atomic_store(&j->abort, true);
		atomic_fetch_add(&j->errors, 1);
	}
	while (!atomic_load(&j->abort) &&
	       (i = atomic_fetch_add(&j->next, 1)) < j->m->nblocks) {
		if (i == 0)
			first = true;
		if (do_block(j, i, plain, sealed)) {
			atomic_fetch_add(&j->errors, 1);
			atomic_store(&j->abort, true);
		}
		atomic_fetch_add(&j->bytes, j->m->block_size);
		/* One thread reports, so lines do not interleave. */
		if (first)
			progress(j, false);
	}
	free(plain);
	free(sealed);
	return NULL;
}

static int run_job(struct job *j, int threads)
{
	pthread_t t[64];
	int n = 0;

	pthread_mutex_init(&j->lock, NULL);
	j->start = j->last = now();
	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	while (n < threads - 1 && !pthread_create(&t[n], NULL, worker, j))
		n++;
	worker(j);
	while (n--)
		pthread_join(t[n], NULL);
	progress(j, true);
	return atomic_load(&j->errors);
}

static void default_selector(const struct vmrs_store *s, char *buf, size_t len)
{
	char host[256] = "";
	const char *user = getenv("USER");
	long day = (long)(time(NULL) / 86400);

	gethostname(host, sizeof(host) - 1);
	if (!user)
		user = "";
	switch (s->salt_mode) {
	case SALT_USER:
		snprintf(buf, len, "user:%u:%s", getuid(), user);
		break;
	case SALT_TIME:
		snprintf(buf, len, "time:%ld", day);
		break;
	case SALT_LOCATION:
		snprintf(buf, len, "location:%s", host);
		break;
	default:
		snprintf(buf, len, "mix:%u:%s:%ld:%s", getuid(), user, day, host);
	}
}

static void mark(uint8_t *dirty, uint64_t nblocks, uint32_t bs, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	for (uint64_t b = off / bs; b <= (off + len - 1) / bs && b < nblocks; b++)
		dirty[b] = 1;
}

/* Dirty ranges from a file of "offset length" lines, or VMRESET_IOC_DIRTY. */
static int read_dirty(const char *file, int fd, const struct vmrs_opts *o,
		      uint8_t *dirty, uint64_t nblocks, uint32_t bs)
{
	struct vmreset_range r[1024];
	struct vmreset_range_list l = { .cursor = 0 };

	if (o->dirty_file) {
		FILE *f = fopen(o->dirty_file, "r");
		unsigned long long off, len;
		char line[256];
		int ln = 0;

		if (!f) {
			vmrs_err("dirty list '%s': %s", o->dirty_file, strerror(errno));
			return -1;
		}
		while (fgets(line, sizeof(line), f)) {
			ln++;
			if (line[0] == '#' || line[0] == '\n')
				continue;
			if (sscanf(line, "%lli %lli", &off, &len) != 2) {
				vmrs_err("dirty list '%s' line %d: expected 'OFFSET LENGTH', got '%.*s'",
					 o->dirty_file, ln, (int)strcspn(line, "\n"), line);
				fclose(f);
				return -1;
			}
			mark(dirty, nblocks, bs, off, len);
		}
		fclose(f);
		return 0;
	}
	do {
		l.ranges = (uintptr_t)r;
		l.nr = 1024;
		if (ioctl(fd, VMRESET_IOC_DIRTY, &l)) {
			vmrs_err("'%s': no dirty list (%s): not a vmresetfs file? pass --dirty FILE",
				 file, strerror(errno));
			return -1;
		}
		for (uint32_t k = 0; k < l.nr; k++)
			mark(dirty, nblocks, bs, r[k].offset, r[k].length);
	} while (l.cursor != VMRESET_CURSOR_END && l.nr);
	return 0;
}

static void read_preserved(int fd, struct vmrs_manifest *m)
{
	static struct vmreset_range r[VMRESET_MAX_PRESERVED];
	struct vmreset_range_list l = { .ranges = (uintptr_t)r,
					.nr = VMRESET_MAX_PRESERVED };

	if (ioctl(fd, VMRESET_IOC_PRESERVE_LIST, &l) || !l.nr)
		return;
	m->ranges = malloc(l.nr * sizeof(*m->ranges));
	if (!m->ranges)
		return;
	for (uint32_t k = 0; k < l.nr; k++) {
		m->ranges[k].offset = r[k].offset;
		m->ranges[k].length = r[k].length;
	}
	m->nranges = l.nr;
}

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return b ? b + 1 : path;
}

int cmd_save(const char *file, const char *store, const struct vmrs_opts *o)
{
	struct vmrs_manifest m = { 0 }, base = { 0 };
	struct vmrs_store s;
	struct job j = { .op = OP_SAVE, .what = file };
	uint8_t key[VMRS_KEY_LEN], salt[VMRS_HASH_LEN], *dirty = NULL;
	const char *name = o->name ? o->name : base_name(file);
	char sel[512];
	struct stat st;
	int fd = -1, ret = 1;
	double t0 = now();

	if (!vmrs_name_ok(name)) {
		vmrs_err("bad snapshot name '%s' (letters, digits, . _ - +; no leading dot)", name);
		return 2;
	}
	if (vmrs_store_open(&s, store, false) || vmrs_key_load(o->key_file, key))
		goto out;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		vmrs_err("'%s': %s", file, strerror(errno));
		goto out;
	}
	m.size = (uint64_t)st.st_size;
	m.block_size = s.block_size;
	m.nblocks = (m.size + m.block_size - 1) / m.block_size;
	m.e = calloc(m.nblocks + 1, sizeof(*m.e));
	if (!m.e)
		goto out;
	read_preserved(fd, &m);
	if (o->base) {
		if (vmrs_manifest_read(&s, o->base, key, &base))
			goto out;
		if (base.block_size != m.block_size) {
			vmrs_err("base '%s' has block size %u, the store %u", o->base,
				 base.block_size, m.block_size);
			goto out;
		}
		dirty = calloc(m.nblocks + 1, 1);
		if (!dirty || read_dirty(file, fd, o, dirty, m.nblocks, m.block_size))
			goto out;
		for (uint64_t i = 0; i < m.nblocks; i++) {
			/* A block the base did not have in full must be read. */
			if (i >= base.nblocks || (i + 1) * m.block_size > base.size ||
			    (i + 1) * m.block_size > m.size)
				dirty[i] = 1;
			else if (!dirty[i])
				m.e[i] = base.e[i];
		}
	}
	if (o->selector)
		snprintf(sel, sizeof(sel), "%s", o->selector);
	else
		default_selector(&s, sel, sizeof(sel));
	vmrs_salt(&s, sel, salt, NULL);
	j.s = &s;
	j.m = &m;
	j.fd = fd;
	j.salt = salt;
	j.dirty = dirty;
	if (run_job(&j, o->threads))
		goto out;
	if (vmrs_sync_blocks(&s) || vmrs_manifest_write(&s, name, key, &m)) {
		vmrs_err("writing manifest '%s': %s", name, strerror(errno));
		goto out;
	}
	printf("saved '%s': %" PRIu64 " bytes, %" PRIu64 " blocks of %u: %" PRIu64
	       " zero, %" PRIu64 " new, %" PRIu64 " deduplicated, %" PRIu64
	       " unchanged; %" PRIu64 " bytes stored; %.3f s\n", name, m.size,
	       m.nblocks, m.block_size, (uint64_t)j.zero, (uint64_t)j.written,
	       (uint64_t)j.dedup,
	       m.nblocks - j.zero - j.written - j.dedup, (uint64_t)j.stored, now() - t0);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(dirty);
	vmrs_manifest_free(&m);
	vmrs_manifest_free(&base);
	vmrs_store_close(&s);
	return ret;
}

int cmd_load(const char *store, const char *name, const char *file,
	     const struct vmrs_opts *o)
{
	struct vmrs_manifest m = { 0 };
	struct vmreset_features f = { .size = sizeof(f) };
	struct vmrs_store s;
	struct job j = { .op = OP_LOAD, .what = name, .partial = o->partial };
	char tmp[PATH_MAX] = "";
	uint8_t key[VMRS_KEY_LEN];
	bool in_place = false;
	struct stat st = { 0 };
	int fd = -1, ret = 1;
	double t0 = now();

	if (vmrs_store_open(&s, store, false) || vmrs_key_load(o->key_file, key) ||
	    vmrs_manifest_read(&s, name, key, &m))
		goto out;
	j.s = &s;
	j.m = &m;
	fd = open(file, O_WRONLY | O_CLOEXEC);
	/*
	 * A vmresetfs file or a device keeps its identity (snapshots, mappings),
	 * so it is written in place, after a pass that checks every block;
	 * anything else gets a temporary file renamed over it.
	 */
	if (fd >= 0 && !fstat(fd, &st) &&
	    (!S_ISREG(st.st_mode) || !ioctl(fd, VMRESET_IOC_FEATURES, &f)))
		in_place = true;
	if (o->partial && fd < 0)
		fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (in_place || o->partial) {
		if (fd < 0) {
			vmrs_err("'%s': %s", file, strerror(errno));
			goto out;
		}
		if (!o->partial) {
			j.op = OP_VERIFY;
			if (run_job(&j, o->threads)) {
				vmrs_err("'%s' left untouched", file);
				goto out;
			}
			j.op = OP_LOAD;
			atomic_store(&j.next, 0);
			atomic_store(&j.bytes, 0);
		}
		j.write_zeros = true;
	} else {
		if (fd >= 0)
			close(fd);
		snprintf(tmp, sizeof(tmp), "%s.vmrs-XXXXXX", file);
		fd = mkstemp(tmp);
		if (fd < 0) {
			vmrs_err("'%s': %s", tmp, strerror(errno));
			goto out;
		}
		fchmod(fd, 0644);
	}
	if (S_ISREG(st.st_mode) || !in_place) {
		if (ftruncate(fd, (off_t)m.size)) {
			vmrs_err("'%s': truncate: %s", file, strerror(errno));
			goto out;
		}
	}
	j.fd = fd;
	if (run_job(&j, o->threads)) {
		if (o->partial)
			vmrs_err("'%s': partial load, %d bad blocks", file, (int)j.errors);
		goto out;
	}
	if (fsync(fd) || (tmp[0] && rename(tmp, file))) {
		vmrs_err("'%s': %s", file, strerror(errno));
		goto out;
	}
	tmp[0] = 0;
	printf("loaded '%s' into '%s': %" PRIu64 " bytes, %" PRIu64 " blocks; %.3f s\n",
	       name, file, m.size, m.nblocks, now() - t0);
	ret = 0;
out:
	if (tmp[0])
		unlink(tmp);
	if (fd >= 0)
		close(fd);
	vmrs_manifest_free(&m);
	vmrs_store_close(&s);
	return ret;
}

static int verify_refs(struct vmrs_store *s, const char *name)
{
	uint8_t (*ids)[VMRS_HASH_LEN], h[VMRS_HASH_LEN];
	char path[PATH_MAX], hex[2 * VMRS_HASH_LEN + 1];
	uint64_t n;
	int bad = 0;

	if (vmrs_manifest_refs(s, name, &ids, &n))
		return 1;
	for (uint64_t i = 0; i < n; i++) {
		size_t len = 0;
		char *buf = NULL;
		FILE *f;

		vmrs_block_path(s, ids[i], path, sizeof(path));
		vmrs_hex(ids[i], VMRS_HASH_LEN, hex);
		f = fopen(path, "r");
		if (!f) {
			vmrs_err("%s: block %s: missing from the store", name, hex);
			bad++;
			continue;
		}
		buf = malloc(VMRS_MAX_BLOCK + VMRS_TAG_LEN + 1);
		if (buf)
			len = fread(buf, 1, VMRS_MAX_BLOCK + VMRS_TAG_LEN + 1, f);
		fclose(f);
		if (buf)
			vmrs_sha256(buf, len, h);
		free(buf);
		if (!buf || memcmp(h, ids[i], VMRS_HASH_LEN)) {
			vmrs_err("%s: block %s: tampered (content does not match its ID)", name, hex);
			bad++;
		}
	}
	free(ids);
	if (!bad)
		printf("verified '%s': %" PRIu64 " blocks present and intact (no key: contents not decrypted)\n",
		       name, n);
	return bad ? 1 : 0;
}

static int verify_one(struct vmrs_store *s, const char *name, const uint8_t *key,
		      const struct vmrs_opts *o)
{
	struct vmrs_manifest m;
	struct job j = { .op = OP_VERIFY, .what = name, .s = s, .m = &m };
	int ret;

	if (!key)
		return verify_refs(s, name);
	if (vmrs_manifest_read(s, name, key, &m))
		return 1;
	ret = run_job(&j, o->threads) ? 1 : 0;
	if (!ret)
		printf("verified '%s': %" PRIu64 " bytes, %" PRIu64 " blocks decrypted and authenticated\n",
		       name, m.size, m.nblocks);
	vmrs_manifest_free(&m);
	return ret;
}

int cmd_verify(const char *store, const char *name, const struct vmrs_opts *o)
{
	uint8_t key[VMRS_KEY_LEN];
	struct vmrs_store s;
	struct dirent *d;
	char path[PATH_MAX];
	int ret = 0, n = 0;
	DIR *dir;

	if (vmrs_store_open(&s, store, false) ||
	    (o->key_file && vmrs_key_load(o->key_file, key))) {
		vmrs_store_close(&s);
		return 1;
	}
	if (name) {
		ret = verify_one(&s, name, o->key_file ? key : NULL, o);
		vmrs_store_close(&s);
		return ret;
	}
	snprintf(path, sizeof(path), "%s/manifests", store);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		n++;
		ret |= verify_one(&s, d->d_name, o->key_file ? key : NULL, o);
	}
	if (dir)
		closedir(dir);
	else
		ret = 1;
	if (!ret)
		printf("store '%s': %d snapshots verified\n", store, n);
	vmrs_store_close(&s);
	return ret;
}
