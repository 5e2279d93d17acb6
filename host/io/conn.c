#include "io/loop_int.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sink/sinks.h"
#include "tls/record.h"
#include "util/addr.h"
#include "util/log.h"
#include "util/util.h"

/* ---- queues of ring buffers ------------------------------------------------- */

void conn_recycle_buf(struct pxy_loop *l, uint32_t bid)
{
	io_uring_buf_ring_add(l->br, buf_addr(l, bid), l->buf_size, (unsigned short)bid, l->br_mask, 0);
	io_uring_buf_ring_advance(l->br, 1);
	l->recycled++;
	l->bufs_held--;
}

static void q_push(struct pxy_loop *l, struct half *h, uint32_t bid, uint32_t len)
{
	l->q_next[bid] = NO_BID;
	l->q_len[bid] = len;
	l->q_off[bid] = 0;
	if (h->q_tail == NO_BID)
		h->q_head = bid;
	else
		l->q_next[h->q_tail] = bid;
	h->q_tail = bid;
	h->q_count++;
	h->queued += len;
}

/* A small receive goes into the room left in the queue's last buffer, and its
 * own buffer straight back to the ring: a peer that sends in dribbles then
 * holds about as many buffers as it sent bytes, not one per segment. The last
 * buffer may be in a send already; the send covers only the bytes it had. */
static int q_append_small(struct pxy_loop *l, struct half *h, uint32_t bid, uint32_t len)
{
	uint32_t tail = h->q_tail;

	if (tail == NO_BID || len > l->buf_size / 4 || l->q_len[tail] + len > l->buf_size)
		return 0;
	memcpy(buf_addr(l, tail) + l->q_len[tail], buf_addr(l, bid), len);
	l->q_len[tail] += len;
	h->queued += len;
	conn_recycle_buf(l, bid);
	return 1;
}

static void q_drop(struct pxy_loop *l, struct half *h)
{
	while (h->q_head != NO_BID) {
		uint32_t bid = h->q_head;

		h->q_head = l->q_next[bid];
		conn_recycle_buf(l, bid);
	}
	h->q_tail = NO_BID;
	h->q_count = 0;
	h->queued = 0;
}

/* ---- connections ------------------------------------------------------------ */

/*
 * Intrusive lists of connections (the starved, the awaiting): a link in the
 * connection, the list's head in the loop, the link's offset naming which.
 */
#define CLINK(c, off) ((struct clink *)(void *)((char *)(c) + (off)))

static void clist_add(struct conn **head, struct conn *c, size_t off)
{
	struct clink *k = CLINK(c, off);

	if (k->on)
		return;
	k->prev = NULL;
	k->next = *head;
	if (*head)
		CLINK(*head, off)->prev = c;
	*head = c;
	k->on = 1;
}

void conn_list_remove(struct conn **head, struct conn *c, size_t off)
{
	struct clink *k = CLINK(c, off);

	if (!k->on)
		return;
	if (k->prev)
		CLINK(k->prev, off)->next = k->next;
	else
		*head = k->next;
	if (k->next)
		CLINK(k->next, off)->prev = k->prev;
	k->prev = k->next = NULL;
	k->on = 0;
}

/*
 * One receive at a time per direction, re-armed only while the queue has
 * room: a stalled peer then holds at most --max-queue plus one buffer of the
 * shared ring. (A multishot receive goes on filling buffers until its
 * cancellation lands, which let one stalled connection take the whole ring.)
 */
static void arm_recv(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_recv(sqe, c->fd[d], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, d, c->slot));
	c->h[d].recv_armed = 1;
	c->h[d].cancel_sent = 0;
	c->ops++;
}

static void cancel_op(struct pxy_loop *l, struct conn *c, unsigned op, unsigned d)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_cancel64(sqe, ud_make(op, d, c->slot), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, d, c->slot));
	c->ops++;
}

static void cancel_recv(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct half *h = &c->h[d];

	if (h->recv_armed && !h->cancel_sent) {
		h->cancel_sent = 1;
		cancel_op(l, c, OP_RECV, d);
	}
}

/* Send whatever is queued in direction d (then its alert record, if any) to the other fd. */
static void start_send(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct half *h = &c->h[d];
	struct io_uring_sqe *sqe;
	unsigned n = 0;

	if (h->sending || h->failed)
		return;
	for (uint32_t bid = h->q_head; bid != NO_BID && n < SEND_IOV; bid = l->q_next[bid]) {
		h->iov[n].iov_base = buf_addr(l, bid) + l->q_off[bid];
		h->iov[n].iov_len = l->q_len[bid] - l->q_off[bid];
		n++;
	}
	h->send_extra = 0;
	if (n == 0 && h->extra_off < h->extra_len) {
		h->iov[0].iov_base = h->extra + h->extra_off;
		h->iov[0].iov_len = (size_t)(h->extra_len - h->extra_off);
		h->send_extra = 1;
		n = 1;
	}
	if (n == 0)
		return;
	memset(&h->msg, 0, sizeof(h->msg));
	h->msg.msg_iov = h->iov;
	h->msg.msg_iovlen = n;
	sqe = loop_get_sqe(l);
	io_uring_prep_sendmsg(sqe, c->fd[!d], &h->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, d, c->slot));
	h->sending = 1;
	c->ops++;
}

/* Both sockets go now; the record of the connection goes when its tap is done. */
static void conn_free(struct pxy_loop *l, struct conn *c, int rst)
{
	for (int d = 0; d < 2; d++) {
		q_drop(l, &c->h[d]);
		if (c->fd[d] >= 0) {
			if (rst) {
				/* SO_LINGER {1, 0}: close() sends RST instead of FIN */
				struct linger lg = { 1, 0 };
				setsockopt(c->fd[d], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			}
			close(c->fd[d]);
			c->fd[d] = -1;
		}
	}
	if (rst)
		l->st.closed_reset++;
	else
		l->st.closed_fin++;
	conn_list_remove(&l->starved, c, STARVED);
	conn_list_remove(&l->due, c, DUE);
	l->conns[c->slot] = NULL;
	l->free_slots[l->nfree++] = c->slot;
	l->st.active--;
	l->finishing++;
	c->t_end = pxy_now_ns();
	if (pxy_tap_finish(c->tap)) /* else it may have called hook_done, which frees c */
		clist_add(&l->awaiting, c, AWAITING);
}

static void start_reset(struct conn *c, const char *why)
{
	if (c->state == CS_RESETTING)
		return;
	if (!c->close_kind || !strcmp(c->close_kind, "fin"))
		c->close_kind = why;
	c->state = CS_RESETTING;
}

void out_hook_verdict(void *ctx)
{
	struct conn *c = ctx;

	/* only while it is open: a closing connection's tap may still decide as it finishes */
	if (c->l->conns[c->slot] == c && c->state == CS_OPEN)
		clist_add(&c->l->due, c, DUE);
}

void conn_step_due(struct pxy_loop *l)
{
	while (l->due) {
		struct conn *c = l->due;

		conn_list_remove(&l->due, c, DUE);
		if (c->state == CS_OPEN)
			conn_step(l, c);
	}
}

/* Policy said no: alert handshake_failure to both sides, then reset both. */
static void start_reject(struct pxy_loop *l, struct conn *c)
{
	char line[1024];
	struct half *to_client = &c->h[PXY_S2C], *to_server = &c->h[PXY_C2S];
	const struct pxy_tap_info *ti = pxy_tap_info(c->tap);

	c->state = CS_REJECTING;
	c->close_kind = "reject";
	l->st.rejected++;
	/* expected: the certificate the SNI names, else the first configured */
	pxy_rejectlog_format(line, sizeof(line), c->id, ti, ti->expected ? ti->expected : l->cfg->expected);
	pxy_warn("%s", line);
	cancel_recv(l, c, PXY_C2S);
	cancel_recv(l, c, PXY_S2C);
	/* the held server flight never reaches the client (nothing of it was sent) */
	if (!to_client->sending)
		q_drop(l, to_client);
	pxy_rec_alert(to_client->extra, pxy_tap_alert_version(c->tap, PXY_S2C), 2, PXY_ALERT_HANDSHAKE_FAILURE);
	to_client->extra_len = 7;
	pxy_rec_alert(to_server->extra, pxy_tap_alert_version(c->tap, PXY_C2S), 2, PXY_ALERT_HANDSHAKE_FAILURE);
	to_server->extra_len = 7;
}

/* What a direction's queue holds of the shared ring: whole buffers, however
 * little each received. This is what --max-queue bounds. */
static uint64_t ring_held(const struct pxy_loop *l, const struct half *h)
{
	return (uint64_t)h->q_count * l->buf_size;
}

void conn_step(struct pxy_loop *l, struct conn *c)
{
	uint64_t maxq = l->cfg->max_queue;

	for (;;) {
		switch (c->state) {
		case CS_CONNECTING:
			return;
		case CS_OPEN: {
			enum pxy_verdict v = pxy_tap_verdict(c->tap);

			/* the server's flight is held until the verdict, but not without bound */
			if (v == PXY_V_PENDING && ring_held(l, &c->h[PXY_S2C]) >= maxq) {
				pxy_tap_hold_overflow(c->tap);
				v = pxy_tap_verdict(c->tap);
			}
			if (v == PXY_V_REJECT) {
				start_reject(l, c);
				continue;
			}
			for (unsigned d = 0; d < 2; d++) {
				struct half *h = &c->h[d];
				int may_send = d == PXY_C2S || v == PXY_V_ALLOW;

				if (may_send)
					start_send(l, c, d);
				if (may_send && h->eof && !h->shut && !h->sending && h->q_count == 0) {
					/* propagate the half-close */
					shutdown(c->fd[!d], SHUT_WR);
					h->shut = 1;
				}
				if (h->eof || h->recv_armed || h->starved)
					continue;
				/* back-pressure: read on only while the other side keeps up */
				if (ring_held(l, h) < maxq && (!h->paused || ring_held(l, h) <= maxq / 2)) {
					h->paused = 0;
					arm_recv(l, c, d);
				} else if (!h->paused) {
					h->paused = 1;
					l->st.recv_paused++;
				}
			}
			if (c->h[0].shut && c->h[1].shut) {
				c->state = CS_CLOSING;
				continue;
			}
			return;
		}
		case CS_CLOSING:
			if (c->ops == 0)
				conn_free(l, c, 0);
			return;
		case CS_REJECTING: {
			int busy = 0;

			for (unsigned d = 0; d < 2; d++) {
				struct half *h = &c->h[d];

				start_send(l, c, d);
				busy |= h->sending || (!h->failed && (h->q_count || h->extra_off < h->extra_len));
			}
			if (busy)
				return;
			c->state = CS_RESETTING;
			continue;
		}
		case CS_RESETTING:
			if (!c->reset_started) {
				c->reset_started = 1;
				for (unsigned d = 0; d < 2; d++) {
					cancel_recv(l, c, d);
					if (c->h[d].sending)
						cancel_op(l, c, OP_SEND, d);
				}
			}
			if (c->ops == 0)
				conn_free(l, c, 1);
			return;
		}
	}
}

/* ---- completions ------------------------------------------------------------ */

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void conn_reset_fd(int fd)
{
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void conn_arm_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_multishot_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, 0, LOOP_SLOT));
	l->accept_armed = 1;
}

/* Stop accepting for 100 ms: errors like EMFILE need time to clear, not a spin. */
static void pause_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe;

	if (l->accept_paused)
		return;
	l->accept_paused = 1;
	l->accept_backoff.tv_sec = 0;
	l->accept_backoff.tv_nsec = 100000000;
	if (l->accept_armed) {
		sqe = loop_get_sqe(l);
		io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, LOOP_SLOT), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, 0, LOOP_SLOT));
	}
	sqe = loop_get_sqe(l);
	io_uring_prep_timeout(sqe, &l->accept_backoff, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT_RETRY, 0, LOOP_SLOT));
}

/* linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: the same value for both */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/*
 * --backend original: where the client meant to go. After an iptables/nft
 * REDIRECT (or DNAT) the kernel keeps it for SO_ORIGINAL_DST; under TPROXY the
 * accepted socket's own address is it. A destination that is the proxy's own
 * listener (a client connecting to the proxy directly) would loop: refused.
 */
static int original_dst(struct pxy_loop *l, int fd, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_storage self;
	socklen_t slen = sizeof(self);
	int family;

	if (getsockname(fd, (struct sockaddr *)&self, &slen) < 0)
		return -1;
	family = self.ss_family;
	*len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (getsockopt(fd, family == AF_INET6 ? SOL_IPV6 : SOL_IP, family == AF_INET6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST,
		       ss, len) == 0 &&
	    ss->ss_family == family) {
		/* a REDIRECT to the listener itself */
		if (!pxy_addr_equal((struct sockaddr *)ss, (struct sockaddr *)&self))
			return 0;
	}
	/* TPROXY: the socket is bound to the original destination */
	if (!pxy_addr_equal((struct sockaddr *)&self, (struct sockaddr *)&l->listen_bound) &&
	    pxy_addr_port((struct sockaddr *)&self) != pxy_addr_port((struct sockaddr *)&l->listen_bound)) {
		*ss = self;
		*len = slen;
		return 0;
	}
	return -1;
}

void conn_on_accept(struct pxy_loop *l, int res, unsigned flags)
{
	struct conn *c;
	struct io_uring_sqe *sqe;
	socklen_t plen = sizeof(c->peer);
	int sfd;

	if (!(flags & IORING_CQE_F_MORE))
		l->accept_armed = 0;
	if (res < 0) {
		/* closing the listener at shutdown ends the multishot accept */
		if (res == -ECANCELED || res == -EAGAIN || l->stopping)
			return;
		if (pxy_now_ns() - l->last_accept_warn > 1000000000ull) {
			l->last_accept_warn = pxy_now_ns();
			pxy_warn("accept: %s%s", strerror(-res),
				 res == -EMFILE || res == -ENFILE ? " (out of file descriptors: pausing accepts)" : "");
		}
		if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
			pause_accept(l);
		return;
	}
	if (l->stopping) {
		conn_reset_fd(res);
		return;
	}
	if (l->nfree == 0) {
		/* over --max-conns: refuse this one, keep every existing one */
		l->st.refused_max_conns++;
		pxy_warn("refusing connection: %u connections open (--max-conns)", l->max_conns);
		conn_reset_fd(res);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		conn_reset_fd(res);
		return;
	}
	c->l = l;
	c->slot = l->free_slots[--l->nfree];
	l->conns[c->slot] = c;
	l->st.accepted++;
	l->st.active++;
	c->fd[PXY_C2S] = res;
	c->fd[PXY_S2C] = -1;
	c->t_start = pxy_now_ns();
	c->last_active = c->t_start;
	c->t_start_unix_us = pxy_unix_us();
	if (l->name[0])
		snprintf(c->id, sizeof(c->id), "%u-%s-%" PRIu64, l->pid, l->name, ++l->next_id);
	else
		snprintf(c->id, sizeof(c->id), "%u-%" PRIu64, l->pid, ++l->next_id);
	for (int d = 0; d < 2; d++) {
		c->h[d].q_head = c->h[d].q_tail = NO_BID;
	}
	getpeername(res, (struct sockaddr *)&c->peer, &plen);
	set_nodelay(res);
	{
		struct pxy_tap_hooks hooks = { .ctx = c, .plaintext = out_hook_plaintext, .keylog = out_hook_keylog,
					       .keylog13 = out_hook_keylog13, .verdict = out_hook_verdict,
					       .done = out_hook_done };
		c->tap = pxy_tap_new(&l->tap_cfg, &hooks);
		if (c->tap)
			c->idset = pxy_idset_get(l->cur.idset);
	}
	sfd = -1;
	if (l->cfg->backend_original) {
		if (original_dst(l, res, &c->backend, &c->backend_len) < 0) {
			char where[64];

			pxy_addr_str((const struct sockaddr *)&c->peer, where, sizeof(where));
			pxy_warn("id=%s client %s: no original destination (it connected to the proxy itself, or "
				 "no REDIRECT/TPROXY rule sent it here); resetting it", c->id, where);
			l->st.no_original_dst++;
			if (c->tap) {
				pxy_tap_set_reason(c->tap, PXY_R_BACKEND_UNREACHABLE);
				c->state = CS_RESETTING;
				c->close_kind = "reset";
				conn_step(l, c);
				return;
			}
		}
	} else {
		c->backend = l->cfg->backend_addr;
		c->backend_len = l->cfg->backend_len;
	}
	if (l->cap_pt || l->cfg->pcap_feed)
		pxy_pcap_flow_init(&c->fl_pt, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->backend);
	if (l->cap_ct)
		pxy_pcap_flow_init(&c->fl_ct, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->backend);
	if (c->tap)
		sfd = socket(c->backend.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!c->tap || sfd < 0) {
		pxy_err_log("id=%s cannot create backend socket: %s", c->id, strerror(errno));
		if (!c->tap) {
			/* without a tap nothing reports the connection: it ends here */
			conn_reset_fd(res);
			if (sfd >= 0)
				close(sfd);
			l->conns[c->slot] = NULL;
			l->free_slots[l->nfree++] = c->slot;
			l->st.active--;
			free(c);
			return;
		}
		pxy_tap_set_reason(c->tap, PXY_R_INTERNAL);
		c->state = CS_RESETTING;
		c->close_kind = "reset";
		conn_step(l, c);
		return;
	}
	set_nodelay(sfd);
	c->fd[PXY_S2C] = sfd;
	c->state = CS_CONNECTING;
	/* connect to the backend at once, before reading a byte from the client */
	sqe = loop_get_sqe(l);
	io_uring_prep_connect(sqe, sfd, (struct sockaddr *)&c->backend, c->backend_len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, 0, c->slot));
	sqe->flags |= IOSQE_IO_LINK;
	c->cto.tv_sec = l->cfg->connect_timeout_ms / 1000;
	c->cto.tv_nsec = (long long)(l->cfg->connect_timeout_ms % 1000) * 1000000;
	sqe = loop_get_sqe(l);
	io_uring_prep_link_timeout(sqe, &c->cto, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CTIMEOUT, 0, c->slot));
	c->ops += 2; /* c (and the timespec in it) lives until both complete */
}

void conn_on_connect(struct pxy_loop *l, struct conn *c, int res)
{
	char server[64];

	c->ops--;
	if (c->state != CS_CONNECTING) {
		conn_step(l, c);
		return;
	}
	if (res == 0) {
		c->state = CS_OPEN;
		conn_step(l, c);
		return;
	}
	if (res == -ECANCELED) {
		res = -ETIMEDOUT;
		l->st.connect_timeout++;
	}
	l->st.connect_failed++;
	pxy_addr_str((const struct sockaddr *)&c->backend, server, sizeof(server));
	pxy_warn("id=%s backend %s unreachable: %s; resetting the client", c->id, server, strerror(-res));
	pxy_tap_set_reason(c->tap, PXY_R_BACKEND_UNREACHABLE);
	c->state = CS_RESETTING;
	c->close_kind = "reset";
	conn_step(l, c);
}

void conn_on_recv(struct pxy_loop *l, struct conn *c, unsigned d, int res, unsigned flags)
{
	struct half *h = &c->h[d];

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;

		KERNEL_WROTE(buf_addr(l, bid), (size_t)res);
		l->bufs_held++;
		c->last_active = pxy_now_ns();
		if (c->state == CS_OPEN) {
			/* the tap sees the bytes before they are forwarded; it copies what it keeps */
			pxy_tap_feed(c->tap, (enum pxy_dir)d, buf_addr(l, bid), (size_t)res);
			if (l->cap_ct)
				out_capture_data(l, c, 1, (enum pxy_dir)d, buf_addr(l, bid), (size_t)res);
			h->bytes += (uint64_t)res;
			l->st.bytes[d] += (uint64_t)res;
			if (!q_append_small(l, h, bid, (uint32_t)res))
				q_push(l, h, bid, (uint32_t)res);
		} else {
			conn_recycle_buf(l, bid);
		}
	}
	h->recv_armed = 0;
	h->cancel_sent = 0;
	c->ops--;
	if (c->state == CS_OPEN) {
		if (res == 0) {
			h->eof = 1;
			pxy_tap_eof(c->tap, (enum pxy_dir)d);
		} else if (res == -ENOBUFS) {
			/* the ring ran dry: re-arm once buffers come back */
			l->st.enobufs++;
			h->starved = 1;
			clist_add(&l->starved, c, STARVED);
		} else if (res < 0 && res != -ECANCELED) {
			/* a reset (or error) on one side resets the other */
			h->eof = 1;
			pxy_tap_eof(c->tap, (enum pxy_dir)d);
			start_reset(c, "reset");
		}
	}
	conn_step(l, c);
}

void conn_on_send(struct pxy_loop *l, struct conn *c, unsigned d, int res)
{
	struct half *h = &c->h[d];

	c->ops--;
	h->sending = 0;
	if (res < 0) {
		h->failed = 1;
		if (c->state == CS_OPEN)
			start_reset(c, "reset");
		conn_step(l, c);
		return;
	}
	if (h->send_extra) {
		h->extra_off = (uint8_t)(h->extra_off + res);
	} else {
		uint64_t left = (uint64_t)res;

		h->queued -= left;
		while (left && h->q_head != NO_BID) {
			uint32_t bid = h->q_head;
			uint32_t avail = l->q_len[bid] - l->q_off[bid];

			if (left < avail) {
				l->q_off[bid] += (uint32_t)left;
				break;
			}
			left -= avail;
			h->q_head = l->q_next[bid];
			if (h->q_head == NO_BID)
				h->q_tail = NO_BID;
			h->q_count--;
			conn_recycle_buf(l, bid);
		}
	}
	h->send_extra = 0;
	conn_step(l, c);
}

void conn_rearm_starved(struct pxy_loop *l)
{
	struct conn *c = l->starved;

	l->recycled = 0;
	while (c) {
		struct conn *next = c->starved.next;

		conn_list_remove(&l->starved, c, STARVED);
		c->h[0].starved = c->h[1].starved = 0;
		conn_step(l, c);
		c = next;
	}
}

