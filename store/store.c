// SPDX-License-Identifier: GPL-2.0
/*
 * store.c - the on-disk store: policy, lock, blocks, key files and manifests
 *
 * Every file is written under tmp/, fsynced and renamed into place, so a
 * save killed at any point leaves either the old state or the new one; a
 * leftover in tmp/ is garbage that gc removes.
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
#include <unistd.h>

#include "store.h"

const char *vmrs_salt_names[] = { "user", "time", "location", "mix", NULL };

#define MAN_MAGIC	"VMRSMAN1"
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

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
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

/* Writes @dir/@name via a unique temporary in the same directory. */
int vmrs_write_file_atomic(const char *dir, const char *name, const void *buf,
			   size_t len)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), "%s/.tmp.%s.%d.%lx", dir, name, getpid(),
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

static char *read_file(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return NULL;
	}
	if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		errno = EIO;
		return NULL;
	}
	close(fd);
	buf[st.st_size] = 0;
	*len = (size_t)st.st_size;
	return buf;
}

int vmrs_store_init(const char *root, uint32_t block_size, uint32_t copies,
		    enum vmrs_salt_mode mode)
{
	char path[PATH_MAX], policy[256], hex[2 * VMRS_HASH_LEN + 1];
	uint8_t secret[VMRS_HASH_LEN];
	int n;

	if (mkdir(root, 0755) && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/policy", root);
	if (!access(path, F_OK))
		return -EEXIST;
	for (int i = -2; i < 256; i++) {
		if (i == -2)
			snprintf(path, sizeof(path), "%s/manifests", root);
		else if (i == -1)
			snprintf(path, sizeof(path), "%s/blocks", root);
		else
			snprintf(path, sizeof(path), "%s/blocks/%02x", root, i);
		if (mkdir(path, 0755) && errno != EEXIST)
			return -errno;
	}
	snprintf(path, sizeof(path), "%s/lock", root);
	n = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (n < 0)
		return -errno;
	close(n);
	if (vmrs_random(secret, sizeof(secret)))
		return -EIO;
	vmrs_hex(secret, sizeof(secret), hex);
	n = snprintf(policy, sizeof(policy),
		     "vmreset-store 1\nblock_size %u\ncopies %u\nsalt %s\nsecret %s\n",
		     block_size, copies, vmrs_salt_names[mode], hex);
	/* The policy is written last: its presence means "initialised". */
	return vmrs_write_file_atomic(root, "policy", policy, (size_t)n);
}

int vmrs_store_open(struct vmrs_store *s, const char *root, bool exclusive)
{
	char path[PATH_MAX], mode[32] = "", hex[80] = "";
	unsigned int ver = 0;
	size_t len;
	char *p;
	int n;

	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	snprintf(path, sizeof(path), "%s/policy", root);
	p = read_file(path, &len);
	if (!p) {
		vmrs_err("%s: not a store (no readable policy: %s)", root, strerror(errno));
		return -1;
	}
	n = sscanf(p, "vmreset-store %u block_size %u copies %u salt %31s secret %79s",
		   &ver, &s->block_size, &s->copies, mode, hex);
	free(p);
	s->salt_mode = SALT_MIX + 1;
	for (int i = 0; vmrs_salt_names[i]; i++)
		if (!strcmp(mode, vmrs_salt_names[i]))
			s->salt_mode = (enum vmrs_salt_mode)i;
	if (n != 5 || ver != 1 || s->salt_mode > SALT_MIX || !s->copies ||
	    s->copies > VMRS_MAX_COPIES || s->block_size < VMRS_MIN_BLOCK ||
	    s->block_size > VMRS_MAX_BLOCK ||
	    vmrs_unhex(hex, s->secret, sizeof(s->secret))) {
		vmrs_err("%s/policy: malformed", root);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/lock", root);
	s->lock_fd = open(path, O_RDWR | O_CLOEXEC);
	if (s->lock_fd < 0 || flock(s->lock_fd, exclusive ? LOCK_EX : LOCK_SH)) {
		vmrs_err("%s: %s", path, strerror(errno));
		return -1;
	}
	s->root = strdup(root);
	return s->root ? 0 : -1;
}

void vmrs_store_close(struct vmrs_store *s)
{
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

	vmrs_hmac(s->secret, sizeof(s->secret), selector, strlen(selector), h);
	idx = (uint32_t)(h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24) % s->copies;
	snprintf(buf, sizeof(buf), "salt %u", idx);
	vmrs_hmac(s->secret, sizeof(s->secret), buf, strlen(buf), salt);
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

void vmrs_block_path(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		     char *path, size_t len)
{
	char hex[2 * VMRS_HASH_LEN + 1];

	vmrs_hex(id, VMRS_HASH_LEN, hex);
	snprintf(path, len, "%s/blocks/%.2s/%s", s->root, hex, hex);
}

int vmrs_block_put(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		   const uint8_t *data, size_t len)
{
	char path[PATH_MAX], hex[2 * VMRS_HASH_LEN + 1];
	int ret;

	vmrs_block_path(s, id, path, sizeof(path));
	if (!access(path, F_OK))
		return 0;
	vmrs_hex(id, VMRS_HASH_LEN, hex);
	snprintf(path, sizeof(path), "%s/blocks/%.2s", s->root, hex);
	ret = vmrs_write_file_atomic(path, hex, data, len);
	return ret ? ret : 1;
}

int vmrs_block_get(const struct vmrs_store *s, const uint8_t id[VMRS_HASH_LEN],
		   uint8_t *data, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	vmrs_block_path(s, id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pread(fd, data, len + 1, 0);
	close(fd);
	if (n < 0)
		return -EIO;
	return (size_t)n == len ? 0 : -EBADMSG;
}

/* Makes the renames of new blocks durable before a manifest names them. */
int vmrs_sync_blocks(const struct vmrs_store *s)
{
	char path[PATH_MAX];
	int ret = 0;

	for (int i = 0; i < 256 && !ret; i++) {
		snprintf(path, sizeof(path), "%s/blocks/%02x", s->root, i);
		ret = fsync_dir(path);
	}
	return ret;
}

int vmrs_key_create(const char *path)
{
	uint8_t buf[KEY_FILE_LEN], h[VMRS_HASH_LEN];
	int fd, ret;

	memcpy(buf, KEY_MAGIC, 8);
	if (vmrs_random(buf + 8, VMRS_KEY_LEN))
		return -EIO;
	vmrs_sha256(buf, 8 + VMRS_KEY_LEN, h);
	memcpy(buf + 8 + VMRS_KEY_LEN, h, 8);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, sizeof(buf));
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

int vmrs_key_load(const char *path, uint8_t key[VMRS_KEY_LEN])
{
	uint8_t h[VMRS_HASH_LEN];
	size_t len;
	char *p = read_file(path, &len);

	if (!p) {
		vmrs_err("key file '%s': %s", path, strerror(errno));
		return -1;
	}
	vmrs_sha256(p, 8 + VMRS_KEY_LEN, h);
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

bool vmrs_name_ok(const char *name)
{
	if (!*name || *name == '.' || strlen(name) > 200)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("._-+", *c)))
			return false;
	return true;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, VMRS_HASH_LEN);
}

/*
 * Layout (little-endian): "VMRSMAN1", u64 nrefs, nrefs sorted unique block
 * IDs (clear, for gc), nonce, u64 ctlen — all of that is the AAD — then the
 * AES-256-GCM ciphertext of: u64 size, u32 block_size, u32 nranges,
 * u64 nblocks, u32 blob_len, u32 0, nblocks (id, key), ranges, blob; tag.
 */
int vmrs_manifest_write(const struct vmrs_store *s, const char *name,
			const uint8_t key[VMRS_KEY_LEN], const struct vmrs_manifest *m)
{
	size_t plen = 32 + m->nblocks * sizeof(struct vmrs_entry) +
		      m->nranges * sizeof(struct vmrs_range) + m->blob_len;
	uint8_t (*refs)[VMRS_HASH_LEN] = malloc((m->nblocks + 1) * VMRS_HASH_LEN);
	uint64_t nrefs = 0, hdr[4];
	uint8_t *plain = malloc(plen), *out = NULL, *p;
	char dir[PATH_MAX];
	size_t olen;
	int ret = -ENOMEM;

	if (!refs || !plain)
		goto out;
	for (uint64_t i = 0; i < m->nblocks; i++)
		if (!vmrs_entry_is_zero(&m->e[i]))
			memcpy(refs[nrefs++], m->e[i].id, VMRS_HASH_LEN);
	qsort(refs, nrefs, VMRS_HASH_LEN, cmp_id);
	for (uint64_t i = 0, j = 0; i < nrefs; i++) {
		if (!j || memcmp(refs[i], refs[j - 1], VMRS_HASH_LEN))
			memcpy(refs[j++], refs[i], VMRS_HASH_LEN);
		if (i == nrefs - 1) {
			nrefs = j;
			break;
		}
	}
	hdr[0] = m->size;
	hdr[1] = m->block_size | (uint64_t)m->nranges << 32;
	hdr[2] = m->nblocks;
	hdr[3] = m->blob_len;
	p = plain;
	memcpy(p, hdr, 32);
	p += 32;
	memcpy(p, m->e, m->nblocks * sizeof(struct vmrs_entry));
	p += m->nblocks * sizeof(struct vmrs_entry);
	memcpy(p, m->ranges, m->nranges * sizeof(struct vmrs_range));
	p += m->nranges * sizeof(struct vmrs_range);
	if (m->blob_len)
		memcpy(p, m->blob, m->blob_len);

	olen = 16 + nrefs * VMRS_HASH_LEN + VMRS_NONCE_LEN + 8 + plen + VMRS_TAG_LEN;
	out = malloc(olen);
	if (!out)
		goto out;
	p = out;
	memcpy(p, MAN_MAGIC, 8);
	memcpy(p + 8, &nrefs, 8);
	p += 16;
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
	snprintf(dir, sizeof(dir), "%s/manifests", s->root);
	ret = vmrs_write_file_atomic(dir, name, out, olen);
	if (!ret)
		ret = fsync_dir(dir);
out:
	free(refs);
	free(plain);
	free(out);
	return ret;
}

static char *manifest_load(const struct vmrs_store *s, const char *name,
			   size_t *len, uint64_t *nrefs)
{
	char path[PATH_MAX];
	char *buf;

	snprintf(path, sizeof(path), "%s/manifests/%s", s->root, name);
	buf = read_file(path, len);
	if (!buf) {
		vmrs_err("manifest '%s': %s", name,
			 errno == ENOENT ? "no such snapshot" : strerror(errno));
		return NULL;
	}
	if (*len < 16 || memcmp(buf, MAN_MAGIC, 8))
		goto bad;
	memcpy(nrefs, buf + 8, 8);
	if (*nrefs > (*len - 16) / VMRS_HASH_LEN ||
	    16 + *nrefs * VMRS_HASH_LEN + VMRS_NONCE_LEN + 8 + VMRS_TAG_LEN > *len)
		goto bad;
	return buf;
bad:
	vmrs_err("manifest '%s': corrupted (bad header)", name);
	free(buf);
	return NULL;
}

int vmrs_manifest_refs(const struct vmrs_store *s, const char *name,
		       uint8_t (**ids)[VMRS_HASH_LEN], uint64_t *n)
{
	size_t len;
	char *buf = manifest_load(s, name, &len, n);

	if (!buf)
		return -1;
	*ids = malloc(*n * VMRS_HASH_LEN + 1);
	if (*ids)
		memcpy(*ids, buf + 16, *n * VMRS_HASH_LEN);
	free(buf);
	return *ids ? 0 : -1;
}

int vmrs_manifest_read(const struct vmrs_store *s, const char *name,
		       const uint8_t key[VMRS_KEY_LEN], struct vmrs_manifest *m)
{
	uint64_t nrefs, plen, hdr[4];
	uint8_t *plain = NULL, *p, *nonce;
	size_t len, off, need;
	char *buf = manifest_load(s, name, &len, &nrefs);

	memset(m, 0, sizeof(*m));
	if (!buf)
		return -1;
	off = 16 + nrefs * VMRS_HASH_LEN;
	nonce = (uint8_t *)buf + off;
	memcpy(&plen, nonce + VMRS_NONCE_LEN, 8);
	off += VMRS_NONCE_LEN + 8;
	if (plen < 32 || plen != len - off - VMRS_TAG_LEN)
		goto bad;
	plain = malloc(plen);
	if (!plain)
		goto bad;
	if (vmrs_aead_open(key, nonce, buf, off, (uint8_t *)buf + off, plen, plain)) {
		vmrs_err("manifest '%s': authentication failed (tampered manifest or wrong key)",
			 name);
		goto err;
	}
	memcpy(hdr, plain, 32);
	m->size = hdr[0];
	m->block_size = (uint32_t)hdr[1];
	m->nranges = (uint32_t)(hdr[1] >> 32);
	m->nblocks = hdr[2];
	m->blob_len = (uint32_t)hdr[3];
	need = 32 + m->nblocks * sizeof(struct vmrs_entry) +
	       (size_t)m->nranges * sizeof(struct vmrs_range) + m->blob_len;
	if (need != plen || !m->block_size ||
	    m->nblocks != (m->size + m->block_size - 1) / m->block_size)
		goto bad;
	p = plain + 32;
	m->e = malloc(m->nblocks * sizeof(struct vmrs_entry) + 1);
	m->ranges = malloc(m->nranges * sizeof(struct vmrs_range) + 1);
	m->blob = malloc(m->blob_len + 1);
	if (!m->e || !m->ranges || !m->blob)
		goto bad;
	memcpy(m->e, p, m->nblocks * sizeof(struct vmrs_entry));
	p += m->nblocks * sizeof(struct vmrs_entry);
	memcpy(m->ranges, p, m->nranges * sizeof(struct vmrs_range));
	p += m->nranges * sizeof(struct vmrs_range);
	memcpy(m->blob, p, m->blob_len);
	free(plain);
	free(buf);
	return 0;
bad:
	vmrs_err("manifest '%s': corrupted", name);
err:
	vmrs_manifest_free(m);
	free(plain);
	free(buf);
	return -1;
}

void vmrs_manifest_free(struct vmrs_manifest *m)
{
	free(m->e);
	free(m->ranges);
	free(m->blob);
	memset(m, 0, sizeof(*m));
}
