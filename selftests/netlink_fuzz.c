// SPDX-License-Identifier: GPL-2.0
/*
 * Throw random, truncated, oversized and mistyped generic netlink messages
 * at the vmreset family for a bounded time. Every request must be answered
 * (an error or a reply, then the ack), the socket must keep working, and
 * the kernel must stay quiet (the test VM checks its log).
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

TEST_TIMEOUT(fuzz_family, 300)
{
	static uint8_t buf[8192], rbuf[65536];
	unsigned long sent = 0, errors = 0, replies = 0;
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
	setsockopt(sock, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));

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
				if (r->nlmsg_seq != nlh->nlmsg_seq)
					continue;
				if (r->nlmsg_type == NLMSG_ERROR) {
					struct nlmsgerr *e = NLMSG_DATA(r);

					errors += e->error != 0;
					answered = true;
				} else if (r->nlmsg_type == NLMSG_DONE) {
					answered = true;
				} else {
					replies++;
				}
			}
		}
		ASSERT_TRUE(answered) TH_LOG("request %lu (cmd %u) got no answer",
					     sent, g->cmd);
	}
	TH_LOG("%lu requests in %d s: %lu errors, %lu replies", sent,
	       FUZZ_SECONDS, errors, replies);
	ASSERT_GT(errors, sent / 2);
	/* The family still works, and the object is intact. */
	ASSERT_EQ(0, vmr_stats(fd, &st));
	ASSERT_EQ(64 * PG, st.file_size);
	close(sock);
	close(fd);
	vmr_umount(dir);
}

TEST_HARNESS_MAIN
