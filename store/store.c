// SPDX-License-Identifier: GPL-2.0
/*
 * store.c - the on-disk store: policy, lock, key files and manifests
 *
 * Every file is written under a temporary name, fsynced and renamed into
 * place, and its directory fsynced, so a save killed at any point leaves
 * either the old state or the new one; a leftover temporary is garbage
 * that gc removes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

const char *vmrs_salt_names[] = { "user", "time", "location", "mix", NULL };
const char *vmrs_cache_dir;
uint64_t vmrs_cache_size = 1ULL << 30;
bool vmrs_cache_ids;

#define MAN_MAGIC	"VMRSMAN2"
#define MAN_FIXED	96	/* magic .. nrefs */
#define BODY_FIXED	48
#define IDENT_LEN	56
#define IDENT_LEN2	64	/* with MF_HOTDEM: + u64 hot_demotions */
#define MF_INCREMENTAL	1U
#define MF_IDENT	2U
#define MF_HOTDEM	4U
#define MF_PROFILE	8U	/* a working-set profile follows the blob */
#define MF_STATE	16U	/* the blob is a VM state (save --state), maybe empty */
#define MF_ALL		(MF_INCREMENTAL | MF_IDENT | MF_HOTDEM | MF_PROFILE | MF_STATE)
#define KEY_MAGIC	"VMRSKEY1"
#define KEY_FILE_LEN	(8 + VMRS_KEY_LEN + 8)

void vmrs_err(const char *fmt, ...)
{
	va_list ap;

	fputs("vmreset-store: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int vmrs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = fsync(fd) ? -errno : 0;
	close(fd);
	return ret;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* All of @len bytes at @off, through EINTR and short transfers. */
static int pio_all(int fd, uint8_t *p, size_t len, off_t off, bool write)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n && !write)
			return -ENODATA;	/* the file is shorter than it must be */
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int vmrs_pread_all(int fd, void *buf, size_t len, off_t off)
{
	return pio_all(fd, buf, len, off, false);
}

int vmrs_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	/* pio_all only reads from @buf when it writes. */
	return pio_all(fd, (uint8_t *)buf, len, off, true);
}

/* Writes @dir/@name via a unique temporary in the same directory. */
int vmrs_write_file_atomic(const char *dir, const char *name, const void *buf,
			   size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), "%s/.tmp.%d.%lx", dir, getpid(),
		 (unsigned long)pthread_self());
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, len);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, dst))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

/* Reads a whole file (read() may return less than asked: loop). */
char *vmrs_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;
	size_t cap = 4096, n = 0;
	char *buf = NULL, *grown;
	struct stat st;

	if (fd < 0)
		return NULL;
	/* One spare byte, so the read that sees EOF needs no growth. */
	if (!fstat(fd, &st) && st.st_size > 0)
		cap = (size_t)st.st_size + 1;
	buf = malloc(cap + 1);
	if (!buf)
		goto err;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			cap *= 2;
			grown = realloc(buf, cap + 1);
			if (!grown)
				goto err;
			buf = grown;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto err;
		if (!r)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*len = n;
	return buf;
err:
	err = errno ? errno : ENOMEM;
	close(fd);
	free(buf);
	errno = err;
	return NULL;
}

int vmrs_store_init(const char *root, uint32_t block_size, uint32_t copies,
		    enum vmrs_salt_mode mode, uint32_t shards)
{
	char path[PATH_MAX], policy[256], hex[2 * VMRS_HASH_LEN + 1];
	uint8_t secret[VMRS_HASH_LEN];
	int n, fd;

	if (vmrs_random(secret, sizeof(secret)))
		return -EIO;
	vmrs_hex(secret, sizeof(secret), hex);
	n = snprintf(policy, sizeof(policy),
		     "vmreset-store 2\nblock_size %u\ncopies %u\nsalt %s\nsecret %s\n",
		     block_size, copies, vmrs_salt_names[mode], hex);
	/* RADOS: no line means the 32 shards of stores made before it. */
	if (shards)
		n += snprintf(policy + n, sizeof(policy) - (size_t)n, "index_shards %u\n", shards);
	if (vmrs_is_rados(root))
		return vmrs_rados_init(root, policy, (size_t)n) ? -EALREADY : 0;
	if (mkdir(root, 0755) && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/policy", root);
	if (!access(path, F_OK))
		return -EEXIST;
	snprintf(path, sizeof(path), "%s/manifests", root);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/packs", root);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/lock", root);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	/* The policy is written last: its presence means "initialised". */
	n = vmrs_write_file_atomic(root, "policy", policy, (size_t)n);
	return n ? n : vmrs_fsync_dir(root);
}

static int parse_policy(struct vmrs_store *s, const char *root, const char *p)
{
	char mode[32] = "", hex[80] = "";
	unsigned int ver = 0;
	int n;

	n = sscanf(p, "vmreset-store %u block_size %u copies %u salt %31s secret %79s",
		   &ver, &s->block_size, &s->copies, mode, hex);
	s->salt_mode = SALT_MIX + 1;
	for (int i = 0; vmrs_salt_names[i]; i++)
		if (!strcmp(mode, vmrs_salt_names[i]))
			s->salt_mode = (enum vmrs_salt_mode)i;
	if (n >= 1 && ver == 1) {
		vmrs_err("'%s': a version 1 store (one file per block); this tool reads version 2: "
			 "load its snapshots with the old tool and save them again", root);
		return -1;
	}
	/* 3: a RADOS store whose index was resharded (older tools must not use it). */
	if (n != 5 || (ver != 2 && ver != 3) || s->salt_mode > SALT_MIX || !s->copies ||
	    s->copies > VMRS_MAX_COPIES || s->block_size < VMRS_MIN_BLOCK ||
	    s->block_size > VMRS_MAX_BLOCK ||
	    vmrs_unhex(hex, s->secret, sizeof(s->secret))) {
		vmrs_err("'%s/policy': malformed", root);
		return -1;
	}
	return 0;
}

/* The host's cache of a RADOS store: one per store (named by its secret). */
static int open_cache(struct vmrs_store *s)
{
	char dir[PATH_MAX], hex[17];
	const char *base = vmrs_cache_dir, *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	uint8_t h[VMRS_HASH_LEN];
	struct vmrs_cache *c;

	if (!vmrs_cache_size)
		return 0;
	if (vmrs_sha256(s->secret, sizeof(s->secret), h))
		return -1;
	vmrs_hex(h, 8, hex);
	if (base)
		snprintf(dir, sizeof(dir), "%s/%s", base, hex);
	else if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/vmreset-store/%s", xdg, hex);
	else
		snprintf(dir, sizeof(dir), "%s/.cache/vmreset-store/%s", home && *home ? home : "/tmp",
			 hex);
	c = vmrs_cache_open(dir, vmrs_cache_size);
	if (!c)
		return -1;
	vmrs_rados_set_cache(s, c);
	return 0;
}

int vmrs_store_open(struct vmrs_store *s, const char *root, bool exclusive)
{
	char path[PATH_MAX];
	size_t len;
	char *p;
	int n;

	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	if (vmrs_is_rados(root)) {
		s->root = strdup(root);
		if (!s->root)
			return -1;
		if (vmrs_rados_open(s, root, exclusive, &p)) {
			free(p);
			return -1;
		}
		n = parse_policy(s, root, p);
		free(p);
		return n ? n : open_cache(s);
	}
	snprintf(path, sizeof(path), "%s/policy", root);
	p = vmrs_read_file(path, &len);
	if (!p) {
		vmrs_err("'%s': not a store (no readable policy: %s)", root, strerror(errno));
		return -1;
	}
	n = parse_policy(s, root, p);
	free(p);
	if (n)
		return n;
	snprintf(path, sizeof(path), "%s/lock", root);
	s->lock_fd = open(path, O_RDWR | O_CLOEXEC);
	if (s->lock_fd < 0 || flock(s->lock_fd, exclusive ? LOCK_EX : LOCK_SH)) {
		vmrs_err("'%s': %s", path, strerror(errno));
		return -1;
	}
	s->root = strdup(root);
	if (!s->root)
		return -1;
	return vmrs_index_open(s);
}

void vmrs_store_close(struct vmrs_store *s)
{
	vmrs_rados_close(s);
	vmrs_index_close(s);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->root);
	s->root = NULL;
	s->lock_fd = -1;
}

/*
 * The selector (user, time window, location or all three) picks one of R
 * salts, so one plaintext block has at most R ciphertexts in the store
 * whatever the number of users, days or hosts saving it.
 */
int vmrs_salt(const struct vmrs_store *s, const char *selector,
	      uint8_t salt[VMRS_HASH_LEN], uint32_t *index)
{
	uint8_t h[VMRS_HASH_LEN];
	char buf[64];
	uint32_t idx;

	if (vmrs_hmac(s->secret, sizeof(s->secret), selector, strlen(selector), h))
		return -1;
	idx = (uint32_t)(h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24) % s->copies;
	snprintf(buf, sizeof(buf), "salt %u", idx);
	if (vmrs_hmac(s->secret, sizeof(s->secret), buf, strlen(buf), salt))
		return -1;
	if (index)
		*index = idx;
	return 0;
}

bool vmrs_entry_is_zero(const struct vmrs_entry *e)
{
	for (int i = 0; i < VMRS_HASH_LEN; i++)
		if (e->id[i])
			return false;
	return true;
}

int vmrs_key_create(const char *path)
{
	uint8_t buf[KEY_FILE_LEN], h[VMRS_HASH_LEN];
	int fd, ret;

	memcpy(buf, KEY_MAGIC, 8);
	if (vmrs_random(buf + 8, VMRS_KEY_LEN))
		return -EIO;
	if (vmrs_sha256(buf, 8 + VMRS_KEY_LEN, h))
		return -EIO;
	memcpy(buf + 8 + VMRS_KEY_LEN, h, 8);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, sizeof(buf));
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	/* The key's name must be durable too: without the key every snapshot is lost. */
	if (!ret) {
		char dir[PATH_MAX], *slash;

		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			dir[1] = 0;
		else
			*slash = 0;
		ret = vmrs_fsync_dir(dir);
	}
	/* A partial key file would only fail later, after a save was attempted. */
	if (ret)
		unlink(path);
	return ret;
}

int vmrs_key_load(const char *path, uint8_t key[VMRS_KEY_LEN])
{
	uint8_t h[VMRS_HASH_LEN];
	size_t len;
	char *p = vmrs_read_file(path, &len);

	if (!p) {
		vmrs_err("key file '%s': %s", path, strerror(errno));
		return -1;
	}
	if (len >= 8 + VMRS_KEY_LEN && vmrs_sha256(p, 8 + VMRS_KEY_LEN, h)) {
		vmrs_err("key file '%s': SHA-256 failed (OpenSSL)", path);
		free(p);
		return -1;
	}
	if (len != KEY_FILE_LEN || memcmp(p, KEY_MAGIC, 8) ||
	    memcmp(p + 8 + VMRS_KEY_LEN, h, 8)) {
		vmrs_err("key file '%s': corrupted or not a vmreset-store key", path);
		free(p);
		return -1;
	}
	memcpy(key, p + 8, VMRS_KEY_LEN);
	free(p);
	return 0;
}

/* Valid UTF-8 without control characters or '/', not starting with '.'. */
bool vmrs_name_ok(const char *name)
{
	const unsigned char *c = (const unsigned char *)name;
	size_t len = strlen(name);

	if (!len || len > VMRS_MAX_NAME || *c == '.')
		return false;
	while (*c) {
		int more = 0;

		if (*c < 0x20 || *c == 0x7f || *c == '/')
			return false;
		if (*c < 0x80)
			more = 0;
		else if ((*c & 0xe0) == 0xc0 && *c >= 0xc2)
			more = 1;
		else if ((*c & 0xf0) == 0xe0)
			more = 2;
		else if ((*c & 0xf8) == 0xf0 && *c <= 0xf4)
			more = 3;
		else
			return false;
		c++;
		while (more--)
			if ((*c++ & 0xc0) != 0x80)
				return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int vmrs_manifest_names(const struct vmrs_store *s, char ***names)
{
	char path[PATH_MAX], **v = NULL, **grown;
	struct dirent *d;
	int n = 0;
	DIR *dir;

	if (s->rados)
		return vmrs_rados_man_names((struct vmrs_store *)s, names);
	snprintf(path, sizeof(path), "%s/manifests", s->root);
	dir = opendir(path);
	if (!dir) {
		vmrs_err("'%s': %s", path, strerror(errno));
		return -1;
	}
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		grown = realloc(v, (size_t)(n + 1) * sizeof(*v));
		if (!grown || !(grown[n] = strdup(d->d_name))) {
			v = grown ? grown : v;
			vmrs_names_free(v, n);
			closedir(dir);
			return -1;
		}
		v = grown;
		n++;
	}
	closedir(dir);
	if (n)
		qsort(v, (size_t)n, sizeof(*v), cmp_str);
	*names = v;
	return n;
}

uint64_t vmrs_manifest_tmps_remove(const struct vmrs_store *s)
{
	char path[PATH_MAX + 300];
	struct dirent *d;
	uint64_t n = 0;
	DIR *dir;

	if (s->rados)
		return 0;	/* gc removes unnamed manifest objects */
	snprintf(path, sizeof(path), "%s/manifests", s->root);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		if (strncmp(d->d_name, ".tmp.", 5))
			continue;
		snprintf(path, sizeof(path), "%s/manifests/%s", s->root, d->d_name);
		n += !unlink(path);
	}
	if (dir)
		closedir(dir);
	return n;
}

void vmrs_names_free(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/*
 * Layout (little-endian). Clear, and all of it the AAD:
 *   "VMRSMAN2", u32 name_len, u32 base_len, u64 seq, u64 time, u64 size,
 *   u64 base_seq, base_digest[32], u32 depth, u32 0, u64 nrefs,
 *   name, base name, nrefs sorted unique block IDs, nonce[12], u64 ctlen
 * AES-256-GCM with the owner key:
 *   u64 size, u32 block_size, u32 nranges, u64 nblocks, u64 nentries,
 *   u32 blob_len, u32 flags, u32 salt_index, u32 profile_len,
 *   ident (boot_id[16], u64 dev, ino, obj_id, snapshots, reverts),
 *   entries: full: nblocks x (id, key); incremental: nentries x
 *   (u64 block, id, key) that differ from the base, ranges, blob,
 *   profile (MF_PROFILE; else profile_len is 0); tag.
 */
struct man_clear {
	char magic[8];
	uint32_t name_len, base_len;
	uint64_t seq, time, size, base_seq;
	uint8_t base_digest[VMRS_HASH_LEN];
	uint32_t depth, pad;
	uint64_t nrefs;
};
_Static_assert(sizeof(struct man_clear) == MAN_FIXED, "manifest header");

struct man_body {
	uint64_t size;
	uint32_t block_size, nranges;
	uint64_t nblocks, nentries;
	uint32_t blob_len, flags, salt_index, profile_len;
};
_Static_assert(sizeof(struct man_body) == BODY_FIXED, "manifest body");

static char *man_path(const struct vmrs_store *s, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/manifests/%s", s->root, name);
	return buf;
}

static char *man_read(const struct vmrs_store *s, const char *name, size_t *len)
{
	char path[PATH_MAX];

	if (s->rados)
		return vmrs_rados_man_read((struct vmrs_store *)s, name, len);
	return vmrs_read_file(man_path(s, name, path, sizeof(path)), len);
}

bool vmrs_manifest_exists(const struct vmrs_store *s, const char *name)
{
	char path[PATH_MAX];

	if (s->rados)
		return vmrs_rados_man_exists((struct vmrs_store *)s, name);
	return !access(man_path(s, name, path, sizeof(path)), F_OK);
}

int vmrs_manifest_remove(const struct vmrs_store *s, const char *name)
{
	char path[PATH_MAX], dir[PATH_MAX];
	int rc;

	if (s->rados) {
		rc = vmrs_rados_man_delete((struct vmrs_store *)s, name);
		return rc == -EBUSY ? -ENOLCK : rc;
	}
	if (unlink(man_path(s, name, path, sizeof(path))))
		return -errno;
	snprintf(dir, sizeof(dir), "%s/manifests", s->root);
	return vmrs_fsync_dir(dir);
}

/* Parses the clear part; returns the offset of the nonce, or 0. */
static size_t parse_clear(const char *name, const uint8_t *buf, size_t len,
			  struct vmrs_mhdr *h)
{
	struct man_clear c;
	size_t off;

	if (len < MAN_FIXED)
		return 0;
	memcpy(&c, buf, sizeof(c));
	if (memcmp(c.magic, MAN_MAGIC, 8) || c.name_len > VMRS_MAX_NAME ||
	    c.base_len > VMRS_MAX_NAME || c.nrefs > len / VMRS_HASH_LEN)
		return 0;
	off = MAN_FIXED + c.name_len + c.base_len + c.nrefs * VMRS_HASH_LEN;
	if (off + VMRS_NONCE_LEN + 8 + VMRS_TAG_LEN > len)
		return 0;
	memset(h, 0, sizeof(*h));
	memcpy(h->name, buf + MAN_FIXED, c.name_len);
	memcpy(h->base, buf + MAN_FIXED + c.name_len, c.base_len);
	h->seq = c.seq;
	h->time = c.time;
	h->size = c.size;
	h->base_seq = c.base_seq;
	memcpy(h->base_digest, c.base_digest, VMRS_HASH_LEN);
	h->depth = c.depth;
	h->nrefs = c.nrefs;
	(void)name;
	return off;
}

static uint8_t *manifest_load(const struct vmrs_store *s, const char *name,
			      size_t *len, struct vmrs_mhdr *h, size_t *nonce_off)
{
	uint8_t *buf;

	buf = (uint8_t *)man_read(s, name, len);
	if (!buf) {
		vmrs_err("manifest '%s': %s", name,
			 errno == ENOENT ? "no such snapshot" : strerror(errno));
		return NULL;
	}
	*nonce_off = parse_clear(name, buf, *len, h);
	if (!*nonce_off) {
		vmrs_err("manifest '%s': corrupted (bad header)", name);
		free(buf);
		return NULL;
	}
	return buf;
}

int vmrs_manifest_header(const struct vmrs_store *s, const char *name,
			 struct vmrs_mhdr *h, uint8_t (**ids)[VMRS_HASH_LEN],
			 uint64_t *file_size)
{
	size_t len, off;
	uint8_t *buf = manifest_load(s, name, &len, h, &off);

	if (!buf)
		return -1;
	if (file_size)
		*file_size = len;
	if (ids) {
		*ids = malloc(h->nrefs * VMRS_HASH_LEN + 1);
		if (*ids)
			memcpy(*ids, buf + off - h->nrefs * VMRS_HASH_LEN,
			       h->nrefs * VMRS_HASH_LEN);
	}
	free(buf);
	return ids && !*ids ? -1 : 0;
}

static int manifest_digest(const struct vmrs_store *s, const char *name,
			   uint8_t digest[VMRS_HASH_LEN])
{
	size_t len;
	int ret;
	char *buf = man_read(s, name, &len);

	if (!buf)
		return -1;
	ret = vmrs_sha256(buf, len, digest);
	free(buf);
	return ret;
}

int vmrs_manifest_write(const struct vmrs_store *s, const uint8_t key[VMRS_KEY_LEN],
			struct vmrs_manifest *m, const struct vmrs_manifest *base)
{
	struct vmrs_mhdr old;
	struct man_clear c = { .magic = MAN_MAGIC };
	struct man_body b = { 0 };
	uint64_t nent = 0, nrefs = 0;
	size_t esz, plen, olen, nl = strlen(m->h.name), bl;
	uint8_t (*refs)[VMRS_HASH_LEN] = NULL, *plain = NULL, *out = NULL, *p;
	uint8_t ident[IDENT_LEN2] = { 0 };
	char dir[PATH_MAX], path[PATH_MAX];
	int ret = -ENOMEM;

	uint8_t digest[VMRS_HASH_LEN];
	int lock;

	lock = vmrs_manifest_lock(s);
	if (lock < 0)
		return lock;
	/* Under the lock: nobody built on the old one, our base is as we read it. */
	if (vmrs_dependents(s, m->h.name, path, sizeof(path)) > 0) {
		vmrs_manifest_unlock(s, lock);
		return -EBUSY;
	}
	if (base && (manifest_digest(s, base->h.name, digest) ||
		     memcmp(digest, base->h.digest, VMRS_HASH_LEN))) {
		vmrs_manifest_unlock(s, lock);
		return -ESTALE;
	}
	if (base && base->h.depth + 1 > VMRS_MAX_CHAIN)
		base = NULL;	/* compaction: a full manifest ends the chain */
	bl = base ? strlen(base->h.name) : 0;
	if (base) {
		memcpy(c.base_digest, base->h.digest, VMRS_HASH_LEN);
		c.base_seq = base->h.seq;
		c.depth = base->h.depth + 1;
	}
	/* Replacing a manifest: the new one's seq follows the old one's. */
	if (vmrs_manifest_exists(s, m->h.name)) {
		if (vmrs_manifest_header(s, m->h.name, &old, NULL, NULL)) {
			vmrs_manifest_unlock(s, lock);
			return -EBADMSG;
		}
		c.seq = old.seq + 1;
	} else {
		c.seq = 1;
	}
	c.time = (uint64_t)time(NULL);
	c.size = m->size;
	c.name_len = (uint32_t)nl;
	c.base_len = (uint32_t)bl;

	esz = base ? 8 + sizeof(struct vmrs_entry) : sizeof(struct vmrs_entry);
	for (uint64_t i = 0; i < m->nblocks; i++)
		if (!base || i >= base->nblocks ||
		    memcmp(&m->e[i], &base->e[i], sizeof(m->e[i])))
			nent++;
	refs = malloc((nent + 1) * VMRS_HASH_LEN);
	plen = BODY_FIXED + IDENT_LEN2 + nent * esz +
	       m->nranges * sizeof(struct vmrs_range) + m->blob_len +
	       (m->profile ? m->profile_len : 0);
	plain = malloc(plen);
	if (!refs || !plain)
		goto out;
	b.size = m->size;
	b.block_size = m->block_size;
	b.nranges = m->nranges;
	b.nblocks = m->nblocks;
	b.nentries = nent;
	b.blob_len = m->blob_len;
	b.flags = (base ? MF_INCREMENTAL : 0) | (m->has_ident ? MF_IDENT : 0) | MF_HOTDEM |
		  (m->profile ? MF_PROFILE : 0) | (m->has_state ? MF_STATE : 0);
	b.profile_len = m->profile ? m->profile_len : 0;
	b.salt_index = m->salt_index;
	if (m->has_ident) {
		memcpy(ident, m->ident.boot_id, 16);
		memcpy(ident + 16, &m->ident.dev, 40);
		memcpy(ident + 56, &m->ident.hot_demotions, 8);
	}
	p = plain;
	memcpy(p, &b, BODY_FIXED);
	p += BODY_FIXED;
	memcpy(p, ident, IDENT_LEN2);
	p += IDENT_LEN2;
	for (uint64_t i = 0; i < m->nblocks; i++) {
		if (base && i < base->nblocks &&
		    !memcmp(&m->e[i], &base->e[i], sizeof(m->e[i])))
			continue;
		if (base) {
			memcpy(p, &i, 8);
			p += 8;
		}
		memcpy(p, &m->e[i], sizeof(m->e[i]));
		p += sizeof(m->e[i]);
		if (!vmrs_entry_is_zero(&m->e[i]))
			memcpy(refs[nrefs++], m->e[i].id, VMRS_HASH_LEN);
	}
	memcpy(p, m->ranges, m->nranges * sizeof(struct vmrs_range));
	p += m->nranges * sizeof(struct vmrs_range);
	if (m->blob_len)
		memcpy(p, m->blob, m->blob_len);
	p += m->blob_len;
	if (b.profile_len)
		memcpy(p, m->profile, b.profile_len);

	vmrs_sort_by_id(refs, nrefs, VMRS_HASH_LEN);
	{
		uint64_t j = 0;

		for (uint64_t i = 0; i < nrefs; i++)
			if (!j || memcmp(refs[i], refs[j - 1], VMRS_HASH_LEN))
				memcpy(refs[j++], refs[i], VMRS_HASH_LEN);
		nrefs = j;
	}
	c.nrefs = nrefs;

	olen = MAN_FIXED + nl + bl + nrefs * VMRS_HASH_LEN + VMRS_NONCE_LEN + 8 +
	       plen + VMRS_TAG_LEN;
	out = malloc(olen);
	if (!out)
		goto out;
	p = out;
	memcpy(p, &c, MAN_FIXED);
	p += MAN_FIXED;
	memcpy(p, m->h.name, nl);
	p += nl;
	if (bl)
		memcpy(p, base->h.name, bl);
	p += bl;
	memcpy(p, refs, nrefs * VMRS_HASH_LEN);
	p += nrefs * VMRS_HASH_LEN;
	if (vmrs_random(p, VMRS_NONCE_LEN)) {
		ret = -EIO;
		goto out;
	}
	memcpy(p + VMRS_NONCE_LEN, &(uint64_t){ plen }, 8);
	p += VMRS_NONCE_LEN + 8;
	if (vmrs_aead_seal(key, p - 8 - VMRS_NONCE_LEN, out, (size_t)(p - out),
			   plain, plen, p)) {
		ret = -EIO;
		goto out;
	}
	if (s->rados) {
		ret = vmrs_rados_man_commit((struct vmrs_store *)s, m->h.name, out, olen);
		/* cls_lock's assert: the lock is gone (expired, taken by gc). */
		if (ret == -EBUSY || ret == -ENOENT)
			ret = -ENOLCK;
	} else {
		snprintf(dir, sizeof(dir), "%s/manifests", s->root);
		ret = vmrs_write_file_atomic(dir, m->h.name, out, olen);
		if (!ret)
			ret = vmrs_fsync_dir(dir);
	}
	if (!ret) {
		m->h.seq = c.seq;
		m->h.time = c.time;
		m->h.depth = c.depth;
		m->h.nrefs = nrefs;
		snprintf(m->h.base, sizeof(m->h.base), "%s", base ? base->h.name : "");
	}
out:
	vmrs_manifest_unlock(s, lock);
	free(refs);
	free(plain);
	free(out);
	return ret;
}

int vmrs_manifest_lock(const struct vmrs_store *s)
{
	char path[PATH_MAX];
	int fd;

	if (s->rados)
		return vmrs_rados_man_lock((struct vmrs_store *)s) ? -EBUSY : INT_MAX;
	snprintf(path, sizeof(path), "%s/manifests.lock", s->root);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX)) {
		close(fd);
		return -errno;
	}
	return fd;
}

void vmrs_manifest_unlock(const struct vmrs_store *s, int fd)
{
	if (s->rados && fd == INT_MAX)
		vmrs_rados_man_unlock((struct vmrs_store *)s);
	else if (fd >= 0)
		close(fd);
}

int vmrs_dependents(const struct vmrs_store *s, const char *name, char *first, size_t len)
{
	char **names;
	int n = vmrs_manifest_names(s, &names), deps = 0;
	struct vmrs_mhdr h;

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (vmrs_manifest_header(s, names[i], &h, NULL, NULL))
			continue;
		if (!strcmp(h.base, name) && !deps++)
			snprintf(first, len, "%s", names[i]);
	}
	vmrs_names_free(names, n);
	return deps;
}

static int read_one(const struct vmrs_store *s, const char *name,
		    const uint8_t key[VMRS_KEY_LEN], struct vmrs_manifest *m,
		    const uint8_t *want_digest, int level)
{
	struct man_body b;
	uint8_t *buf, *plain = NULL, *p, *nonce, digest[VMRS_HASH_LEN];
	uint64_t plen;
	size_t len, off, esz, need, ilen;
	int ret = -1;

	memset(m, 0, sizeof(*m));
	buf = manifest_load(s, name, &len, &m->h, &off);
	if (!buf)
		return -1;
	if (vmrs_sha256(buf, len, digest)) {
		vmrs_err("manifest '%s': SHA-256 failed (OpenSSL)", name);
		goto err;
	}
	if (want_digest) {
		if (memcmp(digest, want_digest, VMRS_HASH_LEN)) {
			vmrs_err("manifest '%s': it changed after a snapshot based on it was saved",
				 name);
			goto err;
		}
	}
	nonce = buf + off;
	memcpy(&plen, nonce + VMRS_NONCE_LEN, 8);
	off += VMRS_NONCE_LEN + 8;
	if (plen < BODY_FIXED + IDENT_LEN || plen != len - off - VMRS_TAG_LEN)
		goto bad;
	plain = malloc(plen);
	if (!plain)
		goto bad;
	if (vmrs_aead_open(key, nonce, buf, off, buf + off, plen, plain)) {
		vmrs_err("manifest '%s': authentication failed (tampered manifest or wrong key)",
			 name);
		goto err;
	}
	memcpy(m->h.digest, digest, VMRS_HASH_LEN);
	/* Authentic, but is it the manifest asked for? */
	if (strcmp(m->h.name, name)) {
		vmrs_err("manifest '%s': it is the manifest of '%s' (renamed or swapped)",
			 name, m->h.name);
		goto err;
	}
	memcpy(&b, plain, BODY_FIXED);
	if (b.flags & ~MF_ALL) {
		vmrs_err("manifest '%s': written by a newer vmreset-store (flags %#x)", name,
			 b.flags);
		goto err;
	}
	ilen = (b.flags & MF_HOTDEM) ? IDENT_LEN2 : IDENT_LEN;
	if (plen < BODY_FIXED + ilen)
		goto bad;
	esz = (b.flags & MF_INCREMENTAL) ? 8 + sizeof(struct vmrs_entry) :
					   sizeof(struct vmrs_entry);
	if (!b.block_size || b.nentries > plen / esz || b.nranges > plen ||
	    b.size != m->h.size || (!(b.flags & MF_INCREMENTAL) && b.nentries != b.nblocks) ||
	    b.nblocks != (b.size + b.block_size - 1) / b.block_size ||
	    !(b.flags & MF_INCREMENTAL) != !m->h.base[0] ||
	    (b.profile_len && !(b.flags & MF_PROFILE)))
		goto bad;
	need = BODY_FIXED + ilen + b.nentries * esz +
	       (size_t)b.nranges * sizeof(struct vmrs_range) + b.blob_len + b.profile_len;
	if (need != plen)
		goto bad;
	m->size = b.size;
	m->block_size = b.block_size;
	m->nblocks = b.nblocks;
	m->nranges = b.nranges;
	m->blob_len = b.blob_len;
	/* Before MF_STATE, a state was a blob that was not empty. */
	m->has_state = (b.flags & MF_STATE) || b.blob_len;
	m->profile_len = b.profile_len;
	m->salt_index = b.salt_index;
	p = plain + BODY_FIXED;
	m->has_ident = b.flags & MF_IDENT;
	memcpy(m->ident.boot_id, p, 16);
	memcpy(&m->ident.dev, p + 16, 40);
	/* Older manifests did not record demotions of hot pages. */
	m->ident.has_hot = b.flags & MF_HOTDEM;
	if (m->ident.has_hot)
		memcpy(&m->ident.hot_demotions, p + 56, 8);
	p += ilen;
	m->e = calloc(m->nblocks + 1, sizeof(struct vmrs_entry));
	m->ranges = malloc(m->nranges * sizeof(struct vmrs_range) + 1);
	m->blob = malloc((size_t)m->blob_len + 1);	/* u32 + 1 wraps to 0 */
	if (b.flags & MF_PROFILE)
		m->profile = malloc((size_t)m->profile_len + 1);
	if (!m->e || !m->ranges || !m->blob || ((b.flags & MF_PROFILE) && !m->profile))
		goto bad;
	if (b.flags & MF_INCREMENTAL) {
		struct vmrs_manifest base;

		if (level >= VMRS_MAX_CHAIN + 1) {
			vmrs_err("manifest '%s': chain of bases too long", name);
			goto err;
		}
		if (read_one(s, m->h.base, key, &base, m->h.base_digest, level + 1)) {
			vmrs_err("manifest '%s': its base '%s' is unusable", name, m->h.base);
			goto err;
		}
		if (base.h.seq != m->h.base_seq || base.block_size != m->block_size) {
			vmrs_err("manifest '%s': its base '%s' is not the one it was saved on",
				 name, m->h.base);
			vmrs_manifest_free(&base);
			goto err;
		}
		memcpy(m->e, base.e, (base.nblocks < m->nblocks ? base.nblocks : m->nblocks) *
		       sizeof(struct vmrs_entry));
		vmrs_manifest_free(&base);
		for (uint64_t k = 0; k < b.nentries; k++) {
			uint64_t i;

			memcpy(&i, p, 8);
			if (i >= m->nblocks)
				goto bad;
			memcpy(&m->e[i], p + 8, sizeof(struct vmrs_entry));
			p += esz;
		}
	} else {
		memcpy(m->e, p, m->nblocks * sizeof(struct vmrs_entry));
		p += m->nblocks * sizeof(struct vmrs_entry);
	}
	memcpy(m->ranges, p, m->nranges * sizeof(struct vmrs_range));
	p += m->nranges * sizeof(struct vmrs_range);
	memcpy(m->blob, p, m->blob_len);
	p += m->blob_len;
	if (m->profile)
		memcpy(m->profile, p, m->profile_len);
	ret = 0;
	goto out;
bad:
	vmrs_err("manifest '%s': corrupted", name);
err:
	vmrs_manifest_free(m);
out:
	free(plain);
	free(buf);
	return ret;
}

int vmrs_manifest_read(const struct vmrs_store *s, const char *name,
		       const uint8_t key[VMRS_KEY_LEN], struct vmrs_manifest *m)
{
	return read_one(s, name, key, m, NULL, 0);
}

void vmrs_manifest_free(struct vmrs_manifest *m)
{
	free(m->e);
	free(m->ranges);
	free(m->blob);
	free(m->profile);
	memset(m, 0, sizeof(*m));
}
