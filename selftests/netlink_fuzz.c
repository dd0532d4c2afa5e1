// SPDX-License-Identifier: GPL-2.0
/*
 * Throw random, truncated, oversized and mistyped generic netlink messages
 * at the vmreset family for a bounded time. Every request must be answered
 * exactly once (an error or a reply, then the ack; nothing stray), the
 * family must then still work over netlink (get, dump, snapshot, revert, an
 * error with its extack message), and the kernel must stay quiet (the test
 * VM checks its log).
 */
#define _GNU_SOURCE
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <sys/socket.h>
#include <time.h>
#include "harness.h"
#include "vmr_util.h"

#define FUZZ_SECONDS	20

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK	10
#endif

static int resolve_family(void)
{
	struct nl_sock *sk = nl_socket_alloc();
	int id = -1;

	if (sk && !genl_connect(sk))
		id = genl_ctrl_resolve(sk, VMRESET_GENL_NAME);
	nl_socket_free(sk);
	return id;
}

static uint64_t rnd(void)
{
	return ((uint64_t)random() << 32) ^ (uint64_t)random();
}

/* A random attribute; sometimes well-formed with a plausible value. */
static size_t put_attr(uint8_t *p, size_t room, uint64_t obj_id)
{
	struct nlattr *a = (struct nlattr *)p;
	size_t len = rnd() % 24, i;
	uint64_t v;

	if (room < NLA_HDRLEN + 24 + 8)
		return 0;
	a->nla_type = rnd() % (VMRESET_A_MAX + 4);
	if (rnd() % 4 == 0)
		a->nla_type |= NLA_F_NESTED;
	switch (rnd() % 4) {
	case 0:		/* a u64 of the right size */
		len = 8;
		v = rnd() % 3 ? (rnd() % 2 ? obj_id : rnd()) : (rnd() % 64) * PG;
		memcpy(p + NLA_HDRLEN, &v, 8);
		break;
	case 1:		/* garbage of any size */
		for (i = 0; i < len; i++)
			p[NLA_HDRLEN + i] = rnd();
		break;
	default:
		for (i = 0; i < len; i++)
			p[NLA_HDRLEN + i] = rnd() % 2 ? 0 : 0xff;
	}
	a->nla_len = NLA_HDRLEN + len;
	if (rnd() % 16 == 0)
		a->nla_len += rnd() % 64;	/* claims more than it has */
	return NLA_ALIGN(NLA_HDRLEN + len);
}

/* What the kernel answered to one well-formed request. */
struct answer {
	int error;		/* of the final ack: 0 or -errno */
	unsigned int replies;	/* data messages before it */
	unsigned int strays;	/* messages for another sequence number */
	uint64_t id, size, reverted;	/* attributes of the last reply */
	bool has_id, saw_id[2];	/* saw_id: replies with id_a / id_b (dumps) */
	char msg[256];		/* extack message */
	uint32_t miss_type;	/* extack: the attribute that is missing */
};

static void put_u64(uint8_t *buf, size_t *len, uint16_t type, uint64_t v)
{
	struct nlattr *a = (struct nlattr *)(buf + *len);

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + 8;
	memcpy(buf + *len + NLA_HDRLEN, &v, 8);
	*len += NLA_ALIGN(NLA_HDRLEN + 8);
}

/*
 * Send @cmd (with OBJ_ID @id unless 0) and read until its ack, within the
 * socket's receive timeout. Returns false if no ack came.
 */
static bool ask(int sock, int family, uint32_t seq, uint8_t cmd, uint16_t flags,
		uint64_t id, const uint64_t dump_ids[2], struct answer *ans)
{
	static uint8_t buf[256], rbuf[65536];
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct genlmsghdr *g = NLMSG_DATA(nlh);
	size_t len = NLMSG_HDRLEN + GENL_HDRLEN;
	ssize_t got;

	memset(buf, 0, sizeof(buf));
	memset(ans, 0, sizeof(*ans));
	if (id)
		put_u64(buf, &len, VMRESET_A_OBJ_ID, id);
	nlh->nlmsg_len = len;
	nlh->nlmsg_type = family;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = seq;
	g->cmd = cmd;
	g->version = VMRESET_GENL_VERSION;
	if (sendto(sock, buf, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) != (ssize_t)len)
		return false;
	while ((got = recv(sock, rbuf, sizeof(rbuf), 0)) > 0) {
		int rem = got;

		for (struct nlmsghdr *r = (struct nlmsghdr *)rbuf; NLMSG_OK(r, rem);
		     r = NLMSG_NEXT(r, rem)) {
			if (r->nlmsg_seq != seq) {
				ans->strays++;
				continue;
			}
			if (r->nlmsg_type == NLMSG_ERROR || r->nlmsg_type == NLMSG_DONE) {
				struct nlmsgerr *e = NLMSG_DATA(r);
				size_t off = NLMSG_HDRLEN + sizeof(*e);

				ans->error = r->nlmsg_type == NLMSG_DONE ? *(int *)NLMSG_DATA(r)
									 : e->error;
				/* Capped acks carry TLVs right after the header. */
				if (r->nlmsg_type == NLMSG_ERROR && (r->nlmsg_flags & NLM_F_ACK_TLVS) &&
				    (r->nlmsg_flags & NLM_F_CAPPED)) {
					while (off + NLA_HDRLEN <= r->nlmsg_len) {
						struct nlattr *a = (struct nlattr *)((uint8_t *)r + off);

						if (a->nla_len < NLA_HDRLEN || off + a->nla_len > r->nlmsg_len)
							break;
						if (a->nla_type == NLMSGERR_ATTR_MSG)
							snprintf(ans->msg, sizeof(ans->msg), "%.*s",
								 (int)(a->nla_len - NLA_HDRLEN),
								 (char *)a + NLA_HDRLEN);
						if (a->nla_type == NLMSGERR_ATTR_MISS_TYPE &&
						    a->nla_len >= NLA_HDRLEN + 4)
							memcpy(&ans->miss_type, (char *)a + NLA_HDRLEN, 4);
						off += NLA_ALIGN(a->nla_len);
					}
				}
				return true;
			}
			ans->replies++;
			for (size_t off = NLMSG_HDRLEN + GENL_HDRLEN; off + NLA_HDRLEN <= r->nlmsg_len;) {
				struct nlattr *a = (struct nlattr *)((uint8_t *)r + off);
				uint64_t v = 0;

				if (a->nla_len < NLA_HDRLEN || off + a->nla_len > r->nlmsg_len)
					break;
				if (a->nla_len >= NLA_HDRLEN + 8)
					memcpy(&v, (uint8_t *)a + NLA_HDRLEN, 8);
				switch (a->nla_type & NLA_TYPE_MASK) {
				case VMRESET_A_OBJ_ID:
					ans->id = v;
					ans->has_id = true;
					for (int i = 0; dump_ids && i < 2; i++)
						ans->saw_id[i] |= v == dump_ids[i];
					break;
				case VMRESET_A_SIZE:
					ans->size = v;
					break;
				case VMRESET_A_REVERTED_PAGES:
					ans->reverted = v;
					break;
				}
				off += NLA_ALIGN(a->nla_len);
			}
		}
	}
	return false;
}

TEST_TIMEOUT(fuzz_family, 300)
{
	static uint8_t buf[8192], rbuf[65536], page[PG], zero[PG];
	unsigned long sent = 0, errors = 0, replies = 0, answers = 0, strays = 0;
	struct answer ans;
	uint64_t ids[2];
	int fd2;
	struct timeval tv = { .tv_sec = 5 };
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	int family, sock, one = 1, fd;
	struct vmreset_stats st;
	char dir[64];
	time_t end;

	family = resolve_family();
	if (family < 0)
		SKIP(return, "no vmreset netlink family (module not loaded)");
	ASSERT_EQ(0, vmr_mount(dir, "size=16m"));
	fd = vmr_file(dir, "f", 64 * PG);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, vmr_stats(fd, &st));
	sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	ASSERT_LE(0, sock);
	ASSERT_EQ(0, setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	ASSERT_EQ(0, setsockopt(sock, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)));
	ASSERT_EQ(0, setsockopt(sock, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one)));

	srandom(1234);
	end = time(NULL) + FUZZ_SECONDS;
	while (time(NULL) < end) {
		struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
		struct genlmsghdr *g = NLMSG_DATA(nlh);
		size_t len = NLMSG_HDRLEN + GENL_HDRLEN, n = rnd() % 6, i;
		bool answered = false;
		ssize_t got;

		memset(buf, 0, sizeof(buf));
		for (i = 0; i < n; i++)
			len += put_attr(buf + len, sizeof(buf) - len, st.id);
		nlh->nlmsg_len = len;
		nlh->nlmsg_type = family;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
		if (rnd() % 5 == 0)
			nlh->nlmsg_flags |= NLM_F_DUMP;
		nlh->nlmsg_seq = ++sent;
		g->cmd = rnd() % (VMRESET_CMD_MAX + 3);
		g->version = rnd() % 4 ? VMRESET_GENL_VERSION : rnd();
		g->reserved = rnd() % 8 ? 0 : rnd();
		if (rnd() % 10 == 0 && len > NLMSG_HDRLEN + GENL_HDRLEN + 2)
			nlh->nlmsg_len = len - 1 - rnd() % 3;	/* truncated */
		ASSERT_EQ((ssize_t)nlh->nlmsg_len,
			  sendto(sock, buf, nlh->nlmsg_len, 0,
				 (struct sockaddr *)&kernel, sizeof(kernel)));

		/* Read until the ack (or error) for this request. */
		while (!answered && (got = recv(sock, rbuf, sizeof(rbuf), 0)) > 0) {
			struct nlmsghdr *r;
			int rem = got;

			for (r = (struct nlmsghdr *)rbuf; NLMSG_OK(r, rem);
			     r = NLMSG_NEXT(r, rem)) {
				/* Only this request is in flight: anything else is a second answer. */
				if (r->nlmsg_seq != nlh->nlmsg_seq) {
					strays++;
					continue;
				}
				if (r->nlmsg_type == NLMSG_ERROR) {
					struct nlmsgerr *e = NLMSG_DATA(r);

					errors += e->error != 0;
					answered = true;
					answers++;
				} else if (r->nlmsg_type == NLMSG_DONE) {
					answered = true;
					answers++;
				} else {
					replies++;
				}
			}
		}
		ASSERT_TRUE(answered) TH_LOG("request %lu (cmd %u) got no answer",
					     sent, g->cmd);
	}
	TH_LOG("%lu requests in %d s: %lu answers (%lu errors), %lu replies, %lu strays",
	       sent, FUZZ_SECONDS, answers, errors, replies, strays);
	ASSERT_EQ(sent, answers);
	ASSERT_EQ(0, strays);
	ASSERT_GT(errors, sent / 2);
	/* Nothing more is on its way for any of them. */
	tv.tv_sec = 1;
	ASSERT_EQ(0, setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	ASSERT_GT(0, recv(sock, rbuf, sizeof(rbuf), 0)) TH_LOG("a late answer arrived");
	tv.tv_sec = 5;
	ASSERT_EQ(0, setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));

	/* The object is intact. */
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(64 * PG, st.file_size);

	/* And the family still works, over netlink, on this same socket. */
	fd2 = vmr_file(dir, "g", 8 * PG);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, vmr_stats(fd2, &st));
	ids[0] = st.id;
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ids[1] = st.id;
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_GET, 0, ids[0], NULL, &ans));
	ASSERT_EQ(0, ans.error);
	ASSERT_EQ(1, ans.replies);
	ASSERT_EQ(ids[0], ans.id);
	ASSERT_EQ(8 * PG, ans.size);
	ASSERT_EQ(0, ans.strays);
	/* A dump lists both objects. */
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_GET, NLM_F_DUMP, 0, ids, &ans));
	ASSERT_EQ(0, ans.error);
	ASSERT_LE(2, ans.replies);
	ASSERT_TRUE(ans.saw_id[0]);
	ASSERT_TRUE(ans.saw_id[1]);
	/* Snapshot, dirty one page by write(2), revert: it is back, whole. */
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_SNAPSHOT, 0, ids[0], NULL, &ans));
	ASSERT_EQ(0, ans.error);
	memset(page, 0x5a, sizeof(page));
	ASSERT_EQ((ssize_t)PG, pwrite(fd2, page, PG, 3 * PG));
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_REVERT, 0, ids[0], NULL, &ans));
	ASSERT_EQ(0, ans.error);
	ASSERT_EQ(1, ans.reverted);
	ASSERT_EQ((ssize_t)PG, pread(fd2, page, PG, 3 * PG));
	ASSERT_EQ(0, memcmp(page, zero, PG));
	/* A request for an object that is not there: ENOENT, with the reason. */
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_REVERT, 0, ~0ULL, NULL, &ans));
	ASSERT_EQ(-ENOENT, ans.error);
	ASSERT_NE(NULL, strstr(ans.msg, "no such object")) TH_LOG("extack: '%s'", ans.msg);
	/* And without an ID: EINVAL, and extack names the missing attribute. */
	ASSERT_TRUE(ask(sock, family, ++sent, VMRESET_CMD_OBJ_SNAPSHOT, 0, 0, NULL, &ans));
	ASSERT_EQ(-EINVAL, ans.error);
	ASSERT_EQ(VMRESET_A_OBJ_ID, ans.miss_type);
	close(sock);
	close(fd2);
	close(fd);
	vmr_umount(dir);
}

TEST_HARNESS_MAIN
