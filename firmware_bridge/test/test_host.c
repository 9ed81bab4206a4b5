/*
 * test_host.c - host unit tests for the protocol core (proto.c) and the bridge logic (bridge.c),
 * with a fake HAL. Built with gcc and the address/undefined sanitizers: make host-test.
 * The known frame vectors here are asserted byte for byte in tests/unit/plc/test_protocol.py too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "proto.h"

static int failures, checks;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
        }                                                                                    \
    } while (0)

/* deterministic PRNG (xorshift32) */
static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ---- fake HAL ---------------------------------------------------------------------------------- */
static mcu_time_t fake_now;
static uint8_t out_ready, out_fault;
static unsigned reject_pulses;
static uint8_t tx_cap[4096];
static size_t tx_len;
static uint8_t tx_free_limit = 255;

mcu_time_t hal_now(void) { return fake_now; }
void hal_set_ready(uint8_t on) { out_ready = on; }
void hal_set_fault(uint8_t on) { out_fault = on; }
void hal_reject(uint16_t pulse_ms) { (void)pulse_ms; reject_pulses++; }
uint8_t hal_reject_active(void) { return 0; }
uint8_t hal_tx_free(void) { return tx_free_limit; }
void hal_tx_write(const uint8_t *buf, uint8_t len)
{
    if (tx_len + len <= sizeof(tx_cap)) {
        memcpy(tx_cap + tx_len, buf, len);
        tx_len += len;
    }
}

/* Decode everything the bridge sent since the last call. */
static int take_frames(proto_frame_t *out, int max)
{
    proto_deframer_t d;
    proto_deframer_init(&d);
    int n = 0;
    for (size_t i = 0; i < tx_len; i++) {
        proto_frame_t f;
        if (proto_deframer_feed(&d, tx_cap[i], &f) && n < max)
            out[n++] = f;
    }
    CHECK(d.bad_frames == 0);
    tx_len = 0;
    return n;
}

static const proto_frame_t *find(const proto_frame_t *fs, int n, uint8_t type)
{
    for (int i = 0; i < n; i++)
        if (fs[i].type == type)
            return &fs[i];
    return NULL;
}

static uint8_t host_seq;
static size_t last_sent_len;
static uint8_t last_sent[PROTO_MAX_ENCODED];

static void send_raw_bytes(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bridge_rx_byte(b[i]);
    bridge_poll();
}

static void host_send(uint8_t type, const uint8_t *payload, size_t len)
{
    last_sent_len = proto_frame_build(type, host_seq, payload, len, last_sent);
    host_seq = seq_next(host_seq);
    send_raw_bytes(last_sent, last_sent_len);
}

static void advance_ms(uint32_t ms)
{
    for (uint32_t i = 0; i < ms; i++) {
        fake_now.ms++;
        bridge_poll();
    }
}

/* ACK every sequenced frame in fs so the bridge stops resending them. */
static void ack_all(const proto_frame_t *fs, int n)
{
    for (int i = 0; i < n; i++) {
        if (fs[i].type != MSG_ACK && fs[i].type != MSG_NAK) {
            uint8_t b[PROTO_MAX_ENCODED];
            size_t k = proto_frame_build(MSG_ACK, fs[i].seq, NULL, 0, b);
            send_raw_bytes(b, k);
        }
    }
    tx_len = 0;
}

/* ---- tests ------------------------------------------------------------------------------------- */
static void test_crc(void)
{
    CHECK(proto_crc16((const uint8_t *)"123456789", 9) == 0x29B1); /* CRC-16/CCITT-FALSE check */
    CHECK(proto_crc16(NULL, 0) == 0xFFFF);
}

static void check_cobs(const uint8_t *in, size_t n, const uint8_t *expect, size_t en)
{
    uint8_t enc[600], dec[600];
    size_t k = cobs_encode(in, n, enc);
    CHECK(k == en && memcmp(enc, expect, en) == 0);
    CHECK(cobs_decode(enc, k, dec, sizeof(dec)) == (int)n && memcmp(dec, in, n) == 0);
}

static void test_cobs(void)
{
    check_cobs((const uint8_t[]){0x00}, 1, (const uint8_t[]){0x01, 0x01}, 2);
    check_cobs((const uint8_t[]){0x00, 0x00}, 2, (const uint8_t[]){0x01, 0x01, 0x01}, 3);
    check_cobs((const uint8_t[]){0x11, 0x22, 0x00, 0x33}, 4,
               (const uint8_t[]){0x03, 0x11, 0x22, 0x02, 0x33}, 5);
    check_cobs((const uint8_t[]){0x11, 0x00, 0x00, 0x00}, 4,
               (const uint8_t[]){0x02, 0x11, 0x01, 0x01, 0x01}, 5);

    uint8_t run[255], enc[300];
    for (int i = 0; i < 255; i++)
        run[i] = (uint8_t)(i + 1);
    size_t k = cobs_encode(run, 254, enc); /* 254 non-zero bytes: FF block, then a final 01 */
    CHECK(k == 256 && enc[0] == 0xFF && enc[255] == 0x01);

    /* random round trips, and encoded output never contains 0x00 */
    for (int t = 0; t < 2000; t++) {
        uint8_t in[300], e[310], d[300];
        size_t n = rnd() % 300;
        for (size_t i = 0; i < n; i++)
            in[i] = (rnd() % 3 == 0) ? 0 : (uint8_t)rnd();
        size_t m = cobs_encode(in, n, e);
        CHECK(m <= n + n / 254 + 1);
        CHECK(memchr(e, 0, m) == NULL);
        CHECK(cobs_decode(e, m, d, sizeof(d)) == (int)n && memcmp(d, in, n) == 0);
    }
    /* malformed: a code pointing past the end, an embedded zero, a too-small output */
    uint8_t out[8];
    CHECK(cobs_decode((const uint8_t[]){0x05, 0x11, 0x22}, 3, out, sizeof(out)) == -1);
    CHECK(cobs_decode((const uint8_t[]){0x03, 0x00, 0x22}, 3, out, sizeof(out)) == -1);
    CHECK(cobs_decode((const uint8_t[]){0x05, 1, 2, 3, 4}, 5, out, 2) == -1);
}

/* Shared with tests/unit/plc/test_protocol.py: DECIDE, seq 7, part 0x12345678, REJECT. */
static const uint8_t VEC_DECIDE[] = {0x0a, 0x04, 0x07, 0x78, 0x56, 0x34, 0x12,
                                     0x01, 0x15, 0xd9, 0x00};
/* ACK of seq 0 (a zero inside the frame). */
static const uint8_t VEC_ACK0[] = {0x02, 0x80, 0x03, 0x97, 0x06, 0x00};

static void test_frames(void)
{
    uint8_t buf[PROTO_MAX_ENCODED], pl[5];
    put_u32le(pl, 0x12345678u);
    pl[4] = VERDICT_REJECT;
    size_t n = proto_frame_build(MSG_DECIDE, 7, pl, 5, buf);
    if (getenv("PRINT_VECTORS")) {
        for (size_t i = 0; i < n; i++)
            printf("%02x ", buf[i]);
        printf("\n");
        n = proto_frame_build(MSG_ACK, 0, NULL, 0, buf);
        for (size_t i = 0; i < n; i++)
            printf("%02x ", buf[i]);
        printf("\n");
        n = proto_frame_build(MSG_DECIDE, 7, pl, 5, buf);
    }
    CHECK(n == sizeof(VEC_DECIDE) && memcmp(buf, VEC_DECIDE, n) == 0);
    n = proto_frame_build(MSG_ACK, 0, NULL, 0, buf);
    CHECK(n == sizeof(VEC_ACK0) && memcmp(buf, VEC_ACK0, n) == 0);

    proto_deframer_t d;
    proto_deframer_init(&d);
    proto_frame_t f;
    int got = 0;
    /* leading garbage and a leading delimiter, then the frame */
    const uint8_t junk[] = {0x55, 0x13, 0x00, 0x00};
    for (size_t i = 0; i < sizeof(junk); i++)
        got += proto_deframer_feed(&d, junk[i], &f);
    CHECK(got == 0 && d.bad_frames == 1);
    for (size_t i = 0; i < sizeof(VEC_DECIDE); i++)
        got += proto_deframer_feed(&d, VEC_DECIDE[i], &f);
    CHECK(got == 1 && f.type == MSG_DECIDE && f.seq == 7 && f.len == 5);
    CHECK(get_u32le(f.payload) == 0x12345678u && f.payload[4] == VERDICT_REJECT);

    /* oversized frame: dropped and counted, the deframer recovers */
    for (int i = 0; i < 200; i++)
        CHECK(!proto_deframer_feed(&d, 0x42, &f));
    CHECK(!proto_deframer_feed(&d, 0x00, &f) && d.bad_frames == 2);
    got = 0;
    for (size_t i = 0; i < sizeof(VEC_DECIDE); i++)
        got += proto_deframer_feed(&d, VEC_DECIDE[i], &f);
    CHECK(got == 1);
    CHECK(proto_frame_build(MSG_DECIDE, 0, pl, PROTO_MAX_PAYLOAD + 1, buf) == 0);
}

static void test_garbage(void)
{
    proto_deframer_t d;
    proto_deframer_init(&d);
    proto_frame_t f;
    unsigned accepted = 0;
    for (long i = 0; i < 2000000; i++) {
        uint8_t b = (rnd() % 16 == 0) ? 0 : (uint8_t)rnd();
        if (proto_deframer_feed(&d, b, &f)) {
            /* whatever comes out must carry a good CRC */
            uint8_t raw[PROTO_MAX_RAW];
            size_t n = proto_frame_raw(f.type, f.seq, f.payload, f.len, raw);
            CHECK(n >= PROTO_MIN_RAW && get_u16le(raw + n - 2) == f.crc);
            accepted++;
        }
    }
    /* a random candidate passes a 16-bit CRC with p = 1/65536: only a handful of ~120000 */
    CHECK(accepted < 20);
    CHECK(d.bad_frames == 0xFFFF); /* saturated, not wrapped */

    /* every single-bit flip of real frames is rejected */
    unsigned flips_accepted = 0;
    for (int t = 0; t < 200; t++) {
        uint8_t pl[PROTO_MAX_PAYLOAD], enc[PROTO_MAX_ENCODED];
        uint8_t len = (uint8_t)(rnd() % (PROTO_MAX_PAYLOAD + 1));
        for (int i = 0; i < len; i++)
            pl[i] = (rnd() % 4 == 0) ? 0 : (uint8_t)rnd();
        size_t n = proto_frame_build((uint8_t)rnd(), (uint8_t)rnd(), pl, len, enc);
        for (size_t bit = 0; bit < (n - 1) * 8; bit++) {
            uint8_t copy[PROTO_MAX_ENCODED];
            memcpy(copy, enc, n);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            proto_deframer_init(&d);
            proto_deframer_feed(&d, 0, &f);
            for (size_t i = 0; i < n; i++)
                flips_accepted += (unsigned)proto_deframer_feed(&d, copy[i], &f);
        }
    }
    CHECK(flips_accepted == 0);
}

static void test_seq_wrap(void)
{
    seq_history_t h;
    seqh_init(&h);
    uint8_t a;
    for (unsigned s = 250; s < 250 + 12; s++)
        seqh_add(&h, (uint8_t)s, (uint16_t)(s * 31u), (uint8_t)(s & 1u));
    CHECK(seqh_lookup(&h, 255, (uint16_t)(255u * 31u), &a) && a == 1);
    CHECK(seqh_lookup(&h, 0, (uint16_t)(256u * 31u), &a) && a == 0);
    CHECK(seqh_lookup(&h, 5, (uint16_t)(261u * 31u), &a) && a == 1);
    CHECK(!seqh_lookup(&h, 0, 0x1234, &a)); /* same seq, different frame: not a duplicate */
    for (unsigned s = 0; s < SEQH_SIZE; s++)
        seqh_add(&h, (uint8_t)(100 + s), 0, 0);
    CHECK(!seqh_lookup(&h, 255, (uint16_t)(255u * 31u), &a)); /* aged out */

    txq_t q;
    txq_init(&q);
    uint8_t pl[4] = {1, 2, 3, 4};
    for (unsigned i = 0; i < 300; i++) {
        uint8_t s = txq_push(&q, MSG_TRIGGER, pl, 4);
        CHECK(s == (uint8_t)i);
        if (i < 254)
            CHECK(txq_ack(&q, s));
    }
    /* 254..299 left: the queue holds the newest TXQ_SIZE, the rest were dropped */
    CHECK(txq_count(&q) == TXQ_SIZE && q.dropped == 46 - TXQ_SIZE);
    /* oldest first across the wrap: 280 & 0xFF = 24 */
    uint8_t expect = (uint8_t)(300 - TXQ_SIZE);
    for (unsigned k = 0; k < TXQ_SIZE; k++) {
        int i = txq_due(&q, 1000);
        CHECK(i >= 0 && q.e[i].seq == expect);
        txq_mark_sent(&q, i, 1000);
        expect = seq_next(expect);
    }
    CHECK(txq_due(&q, 1000 + TXQ_RETX_MS - 1) == -1);
    CHECK(txq_due(&q, 1000 + TXQ_RETX_MS) >= 0);
    /* after TXQ_MAX_SENDS sends, frames are given up and counted */
    uint32_t t = 1000;
    for (unsigned r = 1; r < TXQ_MAX_SENDS; r++) {
        t += TXQ_RETX_MS;
        int i;
        while ((i = txq_due(&q, t)) >= 0 && q.e[i].sent_ms != t)
            txq_mark_sent(&q, i, t);
    }
    t += TXQ_RETX_MS;
    CHECK(txq_due(&q, t) == -1 && txq_count(&q) == 0);
}

static void test_part_table(void)
{
    part_table_t t;
    pt_init(&t);
    uint32_t id;
    for (uint32_t i = 0; i < PT_SIZE; i++)
        CHECK(pt_arm(&t, 1000 + i, 0xFFFFFFF0u + i) == PT_OK); /* deadlines across the ms wrap */
    CHECK(pt_arm(&t, 5000, 10) == PT_FULL);
    CHECK(pt_arm(&t, 1003, 10) == PT_DUPLICATE);
    CHECK(t.count == PT_SIZE);
    CHECK(pt_take(&t, 1003) && !pt_take(&t, 1003) && t.count == PT_SIZE - 1);
    CHECK(pt_arm(&t, 5000, 0xFFFFFFF0u + 3) == PT_OK);
    CHECK(!pt_pop_expired(&t, 0xFFFFFFEFu, &id));
    CHECK(pt_pop_expired(&t, 0xFFFFFFF1u, &id) && id == 1000);
    CHECK(pt_pop_expired(&t, 0xFFFFFFF1u, &id) && id == 1001);
    CHECK(!pt_pop_expired(&t, 0xFFFFFFF1u, &id));
    unsigned n = 0;
    while (pt_pop_expired(&t, 5u, &id)) /* after the wrap: all remaining are due */
        n++;
    CHECK(n == PT_SIZE - 2 && t.count == 0);

    recent_parts_t r;
    recent_init(&r);
    for (uint32_t i = 0; i < 40; i++)
        recent_add(&r, i, (uint8_t)(i % 2 ? NAK_PART_DECIDED : NAK_PART_FAILSAFED));
    CHECK(recent_lookup(&r, 39) == NAK_PART_DECIDED && recent_lookup(&r, 38) == NAK_PART_FAILSAFED);
    CHECK(recent_lookup(&r, 40 - RECENT_SIZE - 1) == 0);
}

static void send_hello(uint32_t session)
{
    uint8_t p[LEN_HELLO] = {PROTO_VERSION, 0, 1, 0};
    put_u32le(p + 4, session);
    host_send(MSG_HELLO, p, sizeof(p));
}

static void send_config(uint16_t pulse, uint16_t hb, uint8_t fs_dl, uint8_t fs_hb)
{
    uint8_t p[LEN_CONFIG];
    put_u16le(p, pulse);
    put_u16le(p + 2, hb);
    p[4] = fs_dl;
    p[5] = fs_hb;
    host_send(MSG_CONFIG, p, sizeof(p));
}

static void send_arm(uint32_t id, uint16_t deadline)
{
    uint8_t p[LEN_ARM];
    put_u32le(p, id);
    put_u16le(p + 4, deadline);
    host_send(MSG_ARM, p, sizeof(p));
}

static void send_decide(uint32_t id, uint8_t verdict)
{
    uint8_t p[LEN_DECIDE];
    put_u32le(p, id);
    p[4] = verdict;
    host_send(MSG_DECIDE, p, sizeof(p));
}

/* The bridge's answer to the frame just sent: 0 = ACK, else the NAK reason, -1 = none. */
static int answer_of(uint8_t seq, proto_frame_t *fs, int *n)
{
    *n = take_frames(fs, 64);
    for (int i = 0; i < *n; i++) {
        if (fs[i].type == MSG_ACK && fs[i].seq == seq)
            return 0;
        if (fs[i].type == MSG_NAK && fs[i].seq == seq)
            return fs[i].payload[0];
    }
    return -1;
}

#define LAST_SEQ ((uint8_t)(host_seq - 1u))

static void test_bridge(void)
{
    proto_frame_t fs[64];
    int n;
    fake_now.ms = 100;
    bridge_init(0x01);
    CHECK(out_fault == 1 && out_ready == 0);
    bridge_poll();
    n = take_frames(fs, 64);
    CHECK(n == 1 && fs[0].type == MSG_INFO && get_u32le(fs[0].payload + 4) == 0); /* boot INFO */
    ack_all(fs, n);

    send_arm(1, 500);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_NOT_CONFIGURED);
    send_hello(0xCAFEu);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    const proto_frame_t *info = find(fs, n, MSG_INFO);
    CHECK(info && info->payload[0] == PROTO_VERSION && get_u32le(info->payload + 4) == 0xCAFEu);
    ack_all(fs, n);

    send_config(0, 500, VERDICT_REJECT, VERDICT_REJECT);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_BAD_VALUE && out_ready == 0);
    send_config(50, 500, VERDICT_REJECT, VERDICT_PASS);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && out_ready == 1 && out_fault == 0);

    /* ARM + DECIDE REJECT: one pulse, APPLIED; the retransmitted DECIDE is re-ACKed only */
    send_arm(42, 300);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    send_decide(42, VERDICT_REJECT);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && reject_pulses == 1);
    const proto_frame_t *ap = find(fs, n, MSG_APPLIED);
    CHECK(ap && get_u32le(ap->payload) == 42 && ap->payload[4] == VERDICT_REJECT);
    ack_all(fs, n);
    send_raw_bytes(last_sent, last_sent_len); /* duplicate */
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && reject_pulses == 1 && !find(fs, n, MSG_APPLIED));
    /* the same part decided again in a new frame */
    send_decide(42, VERDICT_PASS);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_PART_DECIDED);
    send_decide(77, VERDICT_REJECT);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_UNKNOWN_PART && reject_pulses == 1);

    /* deadline: the firmware rejects on its own, and a late DECIDE is not actuated */
    send_arm(43, 200);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    uint32_t armed_at = fake_now.ms;
    for (int i = 0; i < 199; i++) {
        fake_now.ms++;
        bridge_poll();
        if (i % 100 == 0) { host_send(MSG_HEARTBEAT, NULL, 0); }
    }
    n = take_frames(fs, 64);
    CHECK(!find(fs, n, MSG_FAILSAFE) && reject_pulses == 1);
    advance_ms(1);
    n = take_frames(fs, 64);
    const proto_frame_t *fsf = find(fs, n, MSG_FAILSAFE);
    CHECK(fsf && get_u32le(fsf->payload) == 43 && fsf->payload[4] == FS_DEADLINE &&
          fsf->payload[5] == VERDICT_REJECT && get_u32le(fsf->payload + 6) == armed_at + 200);
    CHECK(reject_pulses == 2);
    ack_all(fs, n);
    send_decide(43, VERDICT_PASS);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_PART_FAILSAFED && reject_pulses == 2);

    /* full table: NAK, nothing corrupted */
    for (uint32_t i = 0; i < PT_SIZE; i++) {
        send_arm(100 + i, 5000);
        CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    }
    send_arm(200, 5000);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_TABLE_FULL);
    CHECK(bridge_state().pending == PT_SIZE);
    send_arm(105, 5000);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_DUPLICATE_PART);

    /* garbage on the line, a wrong length, an unknown type: NAKs or drops, never a crash */
    uint8_t junk[64];
    for (int i = 0; i < 64; i++)
        junk[i] = (uint8_t)rnd();
    send_raw_bytes(junk, sizeof(junk));
    send_raw_bytes((const uint8_t[]){0}, 1);
    host_send(MSG_DECIDE, junk, 3);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_BAD_LENGTH);
    host_send(0x33, NULL, 0);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_UNKNOWN_TYPE);
    host_send(MSG_TRIGGER, junk, LEN_TRIGGER); /* a bridge->host type sent to the bridge */
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_UNKNOWN_TYPE);

    /* STATUS */
    host_send(MSG_STATUS_REQ, NULL, 0);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    const proto_frame_t *st = find(fs, n, MSG_STATUS);
    CHECK(st && (st->payload[0] & STATUS_READY) && st->payload[2] == PT_SIZE &&
          get_u32le(st->payload + 8) == 1 && get_u32le(st->payload + 12) == 1);
    ack_all(fs, n);

    /* heartbeat loss: FAULT on, READY off, fail-safe (PASS here) for all 16 pending parts */
    unsigned pulses_before = reject_pulses;
    advance_ms(499);
    CHECK(out_ready == 1);
    advance_ms(1);
    CHECK(out_ready == 0 && out_fault == 1 && bridge_state().pending == 0);
    CHECK(reject_pulses == pulses_before); /* heartbeat fail-safe configured to PASS */
    int faults = 0, failsafes = 0;
    for (int round = 0; round < 5; round++) { /* the UART is slow: collect over a few ms */
        n = take_frames(fs, 64);
        for (int i = 0; i < n; i++) {
            faults += fs[i].type == MSG_FAULT && fs[i].payload[0] == FAULT_HEARTBEAT_LOST;
            failsafes += fs[i].type == MSG_FAILSAFE && fs[i].payload[4] == FS_HEARTBEAT;
        }
        ack_all(fs, n);
        advance_ms(1);
    }
    CHECK(faults == 1 && failsafes == PT_SIZE);
    send_arm(300, 100);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_NOT_CONFIGURED);
    send_decide(110, VERDICT_PASS);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_PART_FAILSAFED);
    send_config(50, 500, VERDICT_REJECT, VERDICT_REJECT);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && out_ready == 1 && out_fault == 0);

    /* a TRIGGER is resent until ACKed, and a full UART buffer delays, never truncates */
    mcu_time_t t = {fake_now.ms, 250};
    tx_free_limit = 5;
    bridge_trigger(t);
    bridge_poll();
    CHECK(tx_len == 0);
    tx_free_limit = 255;
    bridge_poll();
    n = take_frames(fs, 64);
    CHECK(n == 1 && fs[0].type == MSG_TRIGGER && get_u32le(fs[0].payload) == 1 &&
          get_u16le(fs[0].payload + 8) == 250);
    host_send(MSG_HEARTBEAT, NULL, 0);
    tx_len = 0;
    advance_ms(TXQ_RETX_MS);
    proto_frame_t again[8];
    CHECK(take_frames(again, 8) == 1 && again[0].seq == fs[0].seq && again[0].crc == fs[0].crc);

    /* the station cannot record (STATION code 3): READY off, FAULT on, STATUS says so, but parts
     * are still armed and decided (the station's fail-safe REJECTs are pulsed); code 0 clears it */
    uint8_t code = FAULT_STATION;
    host_send(MSG_STATION, &code, 1);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && out_ready == 0 && out_fault == 1);
    host_send(MSG_STATUS_REQ, NULL, 0);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    st = find(fs, n, MSG_STATUS);
    CHECK(st && (st->payload[0] & STATUS_FAULT) && !(st->payload[0] & STATUS_READY) &&
          (st->payload[0] & STATUS_CONFIGURED) && st->payload[1] == FAULT_STATION);
    ack_all(fs, n);
    unsigned pulses_fault = reject_pulses;
    send_arm(400, 300);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0);
    send_decide(400, VERDICT_REJECT);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && reject_pulses == pulses_fault + 1);
    ack_all(fs, n);
    code = 7;
    host_send(MSG_STATION, &code, 1);
    CHECK(answer_of(LAST_SEQ, fs, &n) == NAK_BAD_VALUE && out_fault == 1);
    code = 0;
    host_send(MSG_STATION, &code, 1);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && out_ready == 1 && out_fault == 0);

    /* a new host session: history cleared, so a reused seq is a new frame */
    send_hello(0xBEEFu);
    CHECK(answer_of(LAST_SEQ, fs, &n) == 0 && find(fs, n, MSG_INFO));
}

int main(void)
{
    test_crc();
    test_cobs();
    test_frames();
    test_garbage();
    test_seq_wrap();
    test_part_table();
    test_bridge();
    printf("host-test: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
