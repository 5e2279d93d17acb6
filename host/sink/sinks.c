#include "sink/sinks.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "tls/suites.h"
#include "util/ct.h"
#include "util/util.h"

size_t pxy_keylog_line(char *out, size_t cap, const uint8_t client_random[32], const uint8_t ms[48])
{
	char cr[65], m[97];
	int n;

	pxy_hex(cr, client_random, 32);
	pxy_hex(m, ms, 48);
	n = snprintf(out, cap, "CLIENT_RANDOM %s %s\n", cr, m);
	pxy_wipe(m, sizeof(m));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int pxy_plaintext_path(char *out, size_t cap, const char *dir, const char *id, enum pxy_dir d)
{
	int n = snprintf(out, cap, "%s/%s.%s", dir, id, d == PXY_C2S ? "c2s" : "s2c");
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

void pxy_addr_str(const struct sockaddr *sa, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, cap, "?");
	}
}

static const char *yesno(uint8_t v)
{
	return v ? "yes" : "no";
}

/* TLS 1.3 0-RTT: none, offered (the server never said), accepted (decrypted), refused (skipped) */
static const char *early_name(uint8_t e)
{
	static const char *const names[] = { "none", "offered", "accepted", "refused" };

	return e < 4 ? names[e] : "?";
}

size_t pxy_connlog_format(char *out, size_t cap, const struct pxy_conn_summary *s)
{
	const struct pxy_tap_info *t = s->tap;
	char vbuf[8], sbuf[8], ccert[PXY_SERIAL_MAX + 300] = "no";
	const char *version = "-", *suite = "-", *sni = "-", *etm = "-", *ems = "-";
	const struct pxy_suite *st = NULL;
	int n;

	if (t) {
		if (t->version)
			version = pxy_version_name(t->version, vbuf);
		if (t->has_suite) {
			suite = pxy_suite_name(t->suite, sbuf);
			st = pxy_suite_find(t->suite);
			/* EMS and encrypt-then-MAC mean nothing in TLS 1.3, EtM nothing for AEAD suites */
			ems = t->version == PXY_TLS13 ? "n/a" : yesno(t->ems);
			etm = t->version == PXY_TLS13 || (st && st->mac == PXY_MAC_AEAD) ? "n/a" : yesno(t->etm);
		}
		if (t->sni[0])
			sni = t->sni;
		if (t->client_cert)
			snprintf(ccert, sizeof(ccert), "yes client_subject=%s client_serial=%s", t->client.subject,
				 t->client.serial);
	}
	n = snprintf(out, cap,
		     "conn id=%s client=%s server=%s sni=%s version=%s suite=%s ems=%s etm=%s resumed=%s verdict=%s reason=%s "
		     "bytes_c2s=%" PRIu64 " bytes_s2c=%" PRIu64 " decrypted_c2s=%" PRIu64 " decrypted_s2c=%" PRIu64
		     " client_cert=%s close=%s duration_ms=%" PRIu64 ".%03" PRIu64,
		     s->id, s->client, s->server, sni, version, suite, ems, etm, t && t->resumed ? "yes" : "no",
		     pxy_outcome_name(s->outcome),
		     pxy_reason_name(s->reason), s->bytes[0], s->bytes[1], t ? t->decrypted[0] : 0,
		     t ? t->decrypted[1] : 0, ccert, s->close, s->duration_us / 1000,
		     s->duration_us % 1000);
	if (n > 0 && t && (t->dropped[0] || t->dropped[1]) && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " dropped_c2s=%" PRIu64 " dropped_s2c=%" PRIu64,
			      t->dropped[0], t->dropped[1]);
	/* ECDHE/DHE decrypted with the secret the server forwarded, and how long it took to come */
	if (n > 0 && t && t->keys_forwarded && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " keys=forwarded key_wait_ms=%" PRIu64 ".%03" PRIu64,
			      t->key_wait_us / 1000, t->key_wait_us % 1000);
	/* TLS 1.3: a HelloRetryRequest, 0-RTT data (taken or refused by the server), KeyUpdates per side */
	if (n > 0 && t && t->version == PXY_TLS13 && t->keys_forwarded && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n,
			      " hello_retry=%s early_data=%s key_updates_c2s=%u key_updates_s2c=%u post_auth=%u",
			      yesno(t->hello_retry), early_name(t->early_data), t->key_updates[0], t->key_updates[1],
			      t->post_auth);
	/* what went wrong, when something did: the first parse error (and from whom), the last alert
	 * of each side but close_notify */
	if (n > 0 && t && t->error && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " error=%s:%s", t->error_dir == PXY_C2S ? "client" : "server",
			      pxy_err_str(t->error));
	for (int d = 0; d < 2; d++)
		if (n > 0 && t && t->has_alert[d] && t->alert[d][1] != 0 && (size_t)n < cap)
			n += snprintf(out + n, cap - (size_t)n, " alert_%s=%s:%s(%u)", d == PXY_C2S ? "client" : "server",
				      t->alert[d][0] == 2 ? "fatal" : "warning", pxy_alert_name(t->alert[d][1]),
				      t->alert[d][1]);
	return n > 0 ? PXY_MIN((size_t)n, cap - 1) : 0;
}

/* "2026-11-28T21:57:56.576123Z" */
static void iso_time(char out[40], uint64_t unix_us)
{
	time_t sec = (time_t)(unix_us / 1000000);
	struct tm tm;
	char day[24];

	gmtime_r(&sec, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%06uZ", day, (unsigned)(unix_us % 1000000));
}

static void add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

/* yes/no as true/false; n/a (not meaningful for this version or suite) as null */
static void add_flag(json_object *o, const char *k, int meaningful, uint8_t v)
{
	json_object_object_add(o, k, meaningful ? json_object_new_boolean(v) : NULL);
}

static json_object *cert_json(const struct pxy_cert_info *ci)
{
	json_object *o = json_object_new_object();
	char fp[96];

	pxy_cert_fp_str(ci, fp);
	add_str(o, "subject", ci->subject);
	add_str(o, "serial", ci->serial);
	add_str(o, "sha256", fp);
	return o;
}

size_t pxy_connlog_json(char *out, size_t cap, const struct pxy_conn_summary *s)
{
	const struct pxy_tap_info *t = s->tap;
	const struct pxy_suite *st = t && t->has_suite ? pxy_suite_find(t->suite) : NULL;
	json_object *o = json_object_new_object();
	char vbuf[8], sbuf[8], ts[40], ms[32];
	const char *js;
	size_t n = 0;
	int tls13 = t && t->version == PXY_TLS13;

	if (!o)
		return 0;
	iso_time(ts, s->start_unix_us);
	add_str(o, "start", ts);
	iso_time(ts, s->start_unix_us + s->duration_us);
	add_str(o, "end", ts);
	snprintf(ms, sizeof(ms), "%" PRIu64 ".%03" PRIu64, s->duration_us / 1000, s->duration_us % 1000);
	json_object_object_add(o, "duration_ms", json_object_new_double_s((double)s->duration_us / 1000.0, ms));
	add_str(o, "id", s->id);
	if (s->vserver)
		add_str(o, "vserver", s->vserver);
	add_str(o, "client", s->client);
	add_str(o, "server", s->server);
	add_str(o, "sni", t && t->sni[0] ? t->sni : NULL);
	add_str(o, "version", t && t->version ? pxy_version_name(t->version, vbuf) : NULL);
	add_str(o, "suite", t && t->has_suite ? pxy_suite_name(t->suite, sbuf) : NULL);
	add_flag(o, "ems", t && t->has_suite && !tls13, t ? t->ems : 0);
	add_flag(o, "etm", t && t->has_suite && !tls13 && !(st && st->mac == PXY_MAC_AEAD), t ? t->etm : 0);
	add_str(o, "resumed", !t || !t->resumed ? "no" : t->resumed_ticket ? "ticket" : "session-id");
	json_object_object_add(o, "server_cert", t && t->has_received_cert ? cert_json(&t->received) : NULL);
	json_object_object_add(o, "client_cert", t && t->client_cert ? cert_json(&t->client) : NULL);
	add_str(o, "verdict", pxy_outcome_name(s->outcome));
	add_str(o, "reason", s->reason == PXY_R_NONE ? NULL : pxy_reason_name(s->reason));
	add_u64(o, "bytes_c2s", s->bytes[0]);
	add_u64(o, "bytes_s2c", s->bytes[1]);
	add_u64(o, "decrypted_c2s", t ? t->decrypted[0] : 0);
	add_u64(o, "decrypted_s2c", t ? t->decrypted[1] : 0);
	add_u64(o, "dropped_c2s", t ? t->dropped[0] : 0);
	add_u64(o, "dropped_s2c", t ? t->dropped[1] : 0);
	if (t && t->has_suite) {
		const struct pxy_suite *ks = pxy_suite_find(t->suite);

		/* where the master secret came from: the RSA key here, or the server (forwarded) */
		add_str(o, "keys", t->keys_forwarded ? "forwarded" : ks && ks->kx == PXY_KX_RSA ? "rsa" : NULL);
		if (t->keys_forwarded)
			json_object_object_add(o, "key_wait_ms", json_object_new_double((double)t->key_wait_us / 1000.0));
		if (t->keys_forwarded && t->version == PXY_TLS13) {
			json_object_object_add(o, "hello_retry", json_object_new_boolean(t->hello_retry));
			add_str(o, "early_data", early_name(t->early_data));
			add_u64(o, "key_updates_c2s", t->key_updates[0]);
			add_u64(o, "key_updates_s2c", t->key_updates[1]);
			add_u64(o, "post_auth", t->post_auth);
		}
	}
	if (t && t->error) {
		add_str(o, "error", pxy_err_str(t->error));
		add_str(o, "error_from", t->error_dir == PXY_C2S ? "client" : "server");
	}
	for (int d = 0; d < 2; d++)
		if (t && t->has_alert[d] && t->alert[d][1] != 0) { /* close_notify is no news */
			json_object *a = json_object_new_object();

			add_str(a, "level", t->alert[d][0] == 2 ? "fatal" : "warning");
			add_str(a, "description", pxy_alert_name(t->alert[d][1]));
			add_u64(a, "code", t->alert[d][1]);
			json_object_object_add(o, d == PXY_C2S ? "client_alert" : "server_alert", a);
		}
	add_str(o, "close", s->close);
	if (s->engine)
		add_str(o, "engine", s->engine);
	js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (js && strlen(js) + 2 <= cap) {
		n = strlen(js);
		memcpy(out, js, n);
		out[n++] = '\n';
		out[n] = 0;
	}
	json_object_put(o);
	return n;
}

size_t pxy_rejectlog_format(char *out, size_t cap, const char *id, const struct pxy_tap_info *t,
			    const struct pxy_cert_info *expected)
{
	char vbuf[8], sbuf[8], efp[96], rfp[96];
	int n;

	pxy_cert_fp_str(expected, efp);
	if (t->has_received_cert)
		pxy_cert_fp_str(&t->received, rfp);
	n = snprintf(out, cap,
		     "reject id=%s reason=%s alert=handshake_failure(40) version=%s suite=%s sni=%s "
		     "expected_serial=%s expected_sha256=%s received_serial=%s received_sha256=%s",
		     id, pxy_reason_name(t->reason), t->version ? pxy_version_name(t->version, vbuf) : "-",
		     t->has_suite ? pxy_suite_name(t->suite, sbuf) : "-", t->sni[0] ? t->sni : "-",
		     expected->serial, efp, t->has_received_cert ? t->received.serial : "-",
		     t->has_received_cert ? rfp : "-");
	if (n > 0 && t->missing && (size_t)n < cap)
		n += snprintf(out + n, cap - (size_t)n, " missing_cipher=%s", t->missing);
	return n > 0 ? PXY_MIN((size_t)n, cap - 1) : 0;
}
