/* bridge.c - see bridge.h and ../PROTOCOL.md. */
#include "bridge.h"

#include <string.h>

#define DEFAULT_PULSE_MS 100u
#define DEFAULT_HB_MS 1000u
/* Room kept free in the UART buffer for ACK/NAKs (7 bytes each), so queued events never starve
 * the answers the host is waiting for. */
#define ANSWER_RESERVE 24u

static struct {
    uint8_t configured;
    uint8_t fault_code; /* 0 = none */
    uint16_t pulse_ms;
    uint16_t hb_timeout_ms;
    uint8_t fs_deadline;  /* VERDICT_PASS / VERDICT_REJECT */
    uint8_t fs_heartbeat;
    uint32_t last_rx_ms;
    uint8_t session_valid;
    uint32_t session;
    uint8_t reset_cause;
    uint32_t triggers, decided, failsafes;
    uint16_t rx_overruns;
    proto_deframer_t rx;
    seq_history_t hist;
    txq_t txq;
    part_table_t parts;
    recent_parts_t recent;
} B;

static void sat_inc16(uint16_t *v)
{
    if (*v != 0xFFFFu)
        (*v)++;
}

static void put_time(uint8_t *p, mcu_time_t t)
{
    put_u32le(p, t.ms);
    put_u16le(p + 4, t.us);
}

/* ---- output ---------------------------------------------------------------------------------- */
static void flush_txq(uint32_t now_ms)
{
    uint8_t enc[PROTO_MAX_ENCODED];
    int i;
    while ((i = txq_due(&B.txq, now_ms)) >= 0) {
        uint8_t n = (uint8_t)proto_encode_raw(B.txq.e[i].raw, B.txq.e[i].len, enc);
        if (hal_tx_free() < n + ANSWER_RESERVE)
            return; /* retried on the next wake-up, when the UART has drained */
        hal_tx_write(enc, n);
        txq_mark_sent(&B.txq, i, now_ms);
    }
}

/* ACK (answer 0) or NAK (answer = reason). Not queued: if it does not fit, the host retransmits. */
static void send_answer(uint8_t seq, uint8_t answer)
{
    uint8_t enc[PROTO_MAX_ENCODED];
    uint8_t n = (uint8_t)(answer ? proto_frame_build(MSG_NAK, seq, &answer, 1, enc)
                                 : proto_frame_build(MSG_ACK, seq, NULL, 0, enc));
    if (hal_tx_free() >= n)
        hal_tx_write(enc, n);
}

static void send_info(void)
{
    uint8_t p[LEN_INFO];
    p[0] = PROTO_VERSION;
    p[1] = FW_VERSION_MAJOR;
    p[2] = FW_VERSION_MINOR;
    p[3] = FW_VERSION_PATCH;
    put_u32le(p + 4, B.session_valid ? B.session : 0);
    p[8] = PT_SIZE;
    p[9] = B.reset_cause;
    txq_push(&B.txq, MSG_INFO, p, sizeof(p));
}

static void send_status(mcu_time_t now)
{
    uint8_t p[LEN_STATUS];
    uint8_t flags = 0;
    if (B.configured)
        flags |= STATUS_CONFIGURED;
    if (B.configured && !B.fault_code)
        flags |= STATUS_READY;
    if (B.fault_code)
        flags |= STATUS_FAULT;
    if (hal_reject_active())
        flags |= STATUS_REJECT_ACTIVE;
    uint32_t bad = (uint32_t)B.rx.bad_frames + B.rx_overruns;
    p[0] = flags;
    p[1] = B.fault_code;
    p[2] = B.parts.count;
    p[3] = txq_count(&B.txq);
    put_u32le(p + 4, B.triggers);
    put_u32le(p + 8, B.decided);
    put_u32le(p + 12, B.failsafes);
    put_u16le(p + 16, (uint16_t)(bad > 0xFFFFu ? 0xFFFFu : bad));
    put_u16le(p + 18, B.txq.dropped);
    put_u32le(p + 20, now.ms);
    txq_push(&B.txq, MSG_STATUS, p, sizeof(p));
}

/* ---- actions --------------------------------------------------------------------------------- */
static void actuate(uint8_t verdict)
{
    if (verdict == VERDICT_REJECT)
        hal_reject(B.pulse_ms);
}

static void failsafe(uint32_t part_id, uint8_t reason, mcu_time_t now)
{
    uint8_t action = reason == FS_DEADLINE ? B.fs_deadline : B.fs_heartbeat;
    actuate(action);
    B.failsafes++;
    recent_add(&B.recent, part_id, NAK_PART_FAILSAFED);
    uint8_t p[LEN_FAILSAFE];
    put_u32le(p, part_id);
    p[4] = reason;
    p[5] = action;
    put_time(p + 6, now);
    txq_push(&B.txq, MSG_FAILSAFE, p, sizeof(p));
}

static void enter_fault(uint8_t code, mcu_time_t now)
{
    uint32_t id;
    B.configured = 0;
    B.fault_code = code;
    hal_set_ready(0);
    hal_set_fault(1);
    uint8_t p[LEN_FAULT];
    p[0] = code;
    p[1] = 1;
    put_u32le(p + 2, now.ms);
    txq_push(&B.txq, MSG_FAULT, p, sizeof(p));
    while (pt_pop_any(&B.parts, &id))
        failsafe(id, FS_HEARTBEAT, now);
}

/* Apply one new (not duplicate) host message. Returns 0 (ACK) or a NAK reason. */
static uint8_t apply(const proto_frame_t *f, mcu_time_t now)
{
    int expected = proto_expected_len(f->type);
    if (expected < 0 || f->type >= MSG_TRIGGER)
        return NAK_UNKNOWN_TYPE;
    if (f->len != expected)
        return NAK_BAD_LENGTH;
    const uint8_t *p = f->payload;

    switch (f->type) {
    case MSG_HELLO:
        if (p[0] != PROTO_VERSION)
            return NAK_VERSION;
        send_info();
        return 0;

    case MSG_CONFIG: {
        uint16_t pulse = get_u16le(p), hb = get_u16le(p + 2);
        if (pulse < CFG_PULSE_MIN_MS || pulse > CFG_PULSE_MAX_MS || hb < CFG_HB_MIN_MS ||
            hb > CFG_HB_MAX_MS || p[4] > VERDICT_REJECT || p[5] > VERDICT_REJECT)
            return NAK_BAD_VALUE;
        B.pulse_ms = pulse;
        B.hb_timeout_ms = hb;
        B.fs_deadline = p[4];
        B.fs_heartbeat = p[5];
        B.configured = 1;
        B.fault_code = 0;
        hal_set_fault(0);
        hal_set_ready(1);
        return 0;
    }

    case MSG_ARM: {
        if (!B.configured)
            return NAK_NOT_CONFIGURED;
        uint16_t dl = get_u16le(p + 4);
        if (dl < ARM_DEADLINE_MIN_MS || dl > ARM_DEADLINE_MAX_MS)
            return NAK_BAD_VALUE;
        int r = pt_arm(&B.parts, get_u32le(p), now.ms + dl);
        return r == PT_OK ? 0 : r == PT_FULL ? NAK_TABLE_FULL : NAK_DUPLICATE_PART;
    }

    case MSG_DECIDE: {
        uint32_t id = get_u32le(p);
        uint8_t verdict = p[4];
        if (verdict > VERDICT_REJECT)
            return NAK_BAD_VALUE;
        if (!pt_take(&B.parts, id)) {
            uint8_t why = recent_lookup(&B.recent, id);
            return why ? why : NAK_UNKNOWN_PART;
        }
        actuate(verdict);
        B.decided++;
        recent_add(&B.recent, id, NAK_PART_DECIDED);
        uint8_t a[LEN_APPLIED];
        put_u32le(a, id);
        a[4] = verdict;
        put_time(a + 5, now);
        txq_push(&B.txq, MSG_APPLIED, a, sizeof(a));
        return 0;
    }

    case MSG_HEARTBEAT:
        return 0;

    case MSG_STATUS_REQ:
        send_status(now);
        return 0;

    case MSG_STATION:
        /* the host's own fault (it cannot record): READY off, FAULT on, parts still decided */
        if (!B.configured)
            return NAK_NOT_CONFIGURED;
        if (p[0] != 0 && p[0] != FAULT_STATION)
            return NAK_BAD_VALUE;
        B.fault_code = p[0];
        hal_set_fault(p[0] != 0);
        hal_set_ready(p[0] == 0);
        return 0;

    default:
        return NAK_UNKNOWN_TYPE;
    }
}

static void handle_frame(const proto_frame_t *f)
{
    mcu_time_t now = hal_now();
    B.last_rx_ms = now.ms; /* any good frame counts as a heartbeat */

    if (f->type == MSG_ACK || f->type == MSG_NAK) {
        /* A NAK from the host means it cannot use the event: resending will not help. */
        txq_ack(&B.txq, f->seq);
        return;
    }
    if (f->type == MSG_HELLO && f->len == LEN_HELLO) {
        uint32_t session = get_u32le(f->payload + 4);
        if (!B.session_valid || session != B.session) {
            /* a new host session: its sequence numbers start afresh */
            seqh_init(&B.hist);
            B.session = session;
            B.session_valid = 1;
        }
    }
    uint8_t answer;
    if (!seqh_lookup(&B.hist, f->seq, f->crc, &answer)) {
        answer = apply(f, now);
        seqh_add(&B.hist, f->seq, f->crc, answer);
    }
    send_answer(f->seq, answer);
}

/* ---- entry points ---------------------------------------------------------------------------- */
void bridge_init(uint8_t reset_cause)
{
    memset(&B, 0, sizeof(B));
    B.pulse_ms = DEFAULT_PULSE_MS;
    B.hb_timeout_ms = DEFAULT_HB_MS;
    B.fs_deadline = VERDICT_REJECT;
    B.fs_heartbeat = VERDICT_REJECT;
    B.fault_code = FAULT_NOT_CONFIGURED;
    B.reset_cause = reset_cause;
    proto_deframer_init(&B.rx);
    seqh_init(&B.hist);
    txq_init(&B.txq);
    pt_init(&B.parts);
    recent_init(&B.recent);
    hal_set_ready(0);
    hal_set_fault(1);
    send_info(); /* boot announcement (session 0): tells a connected host the bridge restarted */
}

void bridge_rx_byte(uint8_t byte)
{
    proto_frame_t f;
    if (proto_deframer_feed(&B.rx, byte, &f))
        handle_frame(&f);
}

void bridge_trigger(mcu_time_t t)
{
    uint8_t p[LEN_TRIGGER];
    B.triggers++;
    put_u32le(p, B.triggers);
    put_time(p + 4, t);
    txq_push(&B.txq, MSG_TRIGGER, p, sizeof(p));
}

void bridge_poll(void)
{
    mcu_time_t now = hal_now();
    uint32_t id;
    while (pt_pop_expired(&B.parts, now.ms, &id))
        failsafe(id, FS_DEADLINE, now);
    if (B.configured && (uint32_t)(now.ms - B.last_rx_ms) >= B.hb_timeout_ms)
        enter_fault(FAULT_HEARTBEAT_LOST, now);
    flush_txq(now.ms);
}

void bridge_count_rx_overrun(void) { sat_inc16(&B.rx_overruns); }

bridge_state_t bridge_state(void)
{
    bridge_state_t s = {B.configured, B.fault_code, B.parts.count, txq_count(&B.txq),
                        B.triggers, B.decided, B.failsafes};
    return s;
}
