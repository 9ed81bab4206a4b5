/* proto.c - see proto.h. */
#include "proto.h"

#include <string.h>

int proto_expected_len(uint8_t type)
{
    switch (type) {
    case MSG_HELLO: return LEN_HELLO;
    case MSG_CONFIG: return LEN_CONFIG;
    case MSG_ARM: return LEN_ARM;
    case MSG_DECIDE: return LEN_DECIDE;
    case MSG_HEARTBEAT: return LEN_HEARTBEAT;
    case MSG_STATUS_REQ: return LEN_STATUS_REQ;
    case MSG_STATION: return LEN_STATION;
    case MSG_TRIGGER: return LEN_TRIGGER;
    case MSG_APPLIED: return LEN_APPLIED;
    case MSG_FAILSAFE: return LEN_FAILSAFE;
    case MSG_FAULT: return LEN_FAULT;
    case MSG_STATUS: return LEN_STATUS;
    case MSG_INFO: return LEN_INFO;
    case MSG_ACK: return LEN_ACK;
    case MSG_NAK: return LEN_NAK;
    default: return -1;
    }
}

/* ---- CRC-16/CCITT-FALSE ---------------------------------------------------------------------- */
uint16_t proto_crc16_update(uint16_t crc, uint8_t byte)
{
    uint16_t c = (uint16_t)(crc ^ ((uint16_t)byte << 8));
    for (uint8_t i = 0; i < 8; i++)
        c = (c & 0x8000u) ? (uint16_t)(((unsigned)c << 1) ^ 0x1021u) : (uint16_t)((unsigned)c << 1);
    return c;
}

uint16_t proto_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFFu;
    while (len--)
        crc = proto_crc16_update(crc, *data++);
    return crc;
}

/* ---- COBS ------------------------------------------------------------------------------------ */
size_t cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        if (code == 0)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= len || in[i] == 0 || o >= out_cap)
                return -1;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < len) {
            if (o >= out_cap)
                return -1;
            out[o++] = 0;
        }
    }
    return (int)o;
}

/* ---- frames ---------------------------------------------------------------------------------- */
size_t proto_frame_raw(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out)
{
    if (len > PROTO_MAX_PAYLOAD)
        return 0;
    out[0] = type;
    out[1] = seq;
    if (len)
        memcpy(out + PROTO_HEADER_LEN, payload, len);
    size_t n = PROTO_HEADER_LEN + len;
    put_u16le(out + n, proto_crc16(out, n));
    return n + PROTO_CRC_LEN;
}

size_t proto_encode_raw(const uint8_t *raw, size_t raw_len, uint8_t *out)
{
    size_t n = cobs_encode(raw, raw_len, out);
    out[n++] = 0x00;
    return n;
}

size_t proto_frame_build(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out)
{
    uint8_t raw[PROTO_MAX_RAW];
    size_t n = proto_frame_raw(type, seq, payload, len, raw);
    return n ? proto_encode_raw(raw, n, out) : 0;
}

int proto_frame_parse(const uint8_t *raw, size_t len, proto_frame_t *out)
{
    if (len < PROTO_MIN_RAW || len > PROTO_MAX_RAW)
        return 0;
    size_t body = len - PROTO_CRC_LEN;
    if (proto_crc16(raw, body) != get_u16le(raw + body))
        return 0;
    out->type = raw[0];
    out->seq = raw[1];
    out->len = (uint8_t)(body - PROTO_HEADER_LEN);
    out->crc = get_u16le(raw + body);
    memcpy(out->payload, raw + PROTO_HEADER_LEN, out->len);
    return 1;
}

void proto_deframer_init(proto_deframer_t *d) { memset(d, 0, sizeof(*d)); }

static void count_bad(proto_deframer_t *d)
{
    if (d->bad_frames != 0xFFFFu)
        d->bad_frames++;
}

int proto_deframer_feed(proto_deframer_t *d, uint8_t byte, proto_frame_t *out)
{
    if (byte != 0x00) {
        if (d->len < sizeof(d->buf))
            d->buf[d->len++] = byte;
        else
            d->overflow = 1;
        return 0;
    }
    /* Delimiter: an empty frame (e.g. a leading 0x00 sent to resynchronise) is not an error. */
    int ok = 0;
    if (d->overflow) {
        count_bad(d);
    } else if (d->len) {
        uint8_t raw[PROTO_MAX_RAW];
        int n = cobs_decode(d->buf, d->len, raw, sizeof(raw));
        ok = n > 0 && proto_frame_parse(raw, (size_t)n, out);
        if (!ok)
            count_bad(d);
    }
    d->len = 0;
    d->overflow = 0;
    return ok;
}

/* ---- receive history ------------------------------------------------------------------------- */
void seqh_init(seq_history_t *h) { memset(h, 0, sizeof(*h)); }

int seqh_lookup(const seq_history_t *h, uint8_t seq, uint16_t crc, uint8_t *answer)
{
    for (uint8_t i = 0; i < h->count; i++) {
        if (h->seq[i] == seq && h->crc[i] == crc) {
            *answer = h->answer[i];
            return 1;
        }
    }
    return 0;
}

void seqh_add(seq_history_t *h, uint8_t seq, uint16_t crc, uint8_t answer)
{
    h->seq[h->head] = seq;
    h->crc[h->head] = crc;
    h->answer[h->head] = answer;
    h->head = (uint8_t)((h->head + 1u) % SEQH_SIZE);
    if (h->count < SEQH_SIZE)
        h->count++;
}

/* ---- transmit queue -------------------------------------------------------------------------- */
void txq_init(txq_t *q) { memset(q, 0, sizeof(*q)); }

static void txq_count_drop(txq_t *q)
{
    if (q->dropped != 0xFFFFu)
        q->dropped++;
}

uint8_t txq_push(txq_t *q, uint8_t type, const uint8_t *payload, uint8_t len)
{
    int slot = -1, oldest = 0;
    for (uint8_t i = 0; i < TXQ_SIZE; i++) {
        if (!q->e[i].used) {
            slot = i;
            break;
        }
        /* oldest = the smallest distance back from next_seq */
        if ((uint8_t)(q->next_seq - q->e[i].seq) > (uint8_t)(q->next_seq - q->e[oldest].seq))
            oldest = i;
    }
    if (slot < 0) {
        slot = oldest;
        txq_count_drop(q);
    }
    txq_entry_t *e = &q->e[slot];
    if (len > sizeof(e->raw) - PROTO_HEADER_LEN - PROTO_CRC_LEN)
        len = 0; /* programming error: send it empty rather than overrun */
    e->used = 1;
    e->seq = q->next_seq;
    e->sends = 0;
    e->sent_ms = 0;
    e->len = (uint8_t)proto_frame_raw(type, e->seq, payload, len, e->raw);
    q->next_seq = seq_next(q->next_seq);
    return e->seq;
}

int txq_ack(txq_t *q, uint8_t seq)
{
    for (uint8_t i = 0; i < TXQ_SIZE; i++) {
        if (q->e[i].used && q->e[i].seq == seq) {
            q->e[i].used = 0;
            return 1;
        }
    }
    return 0;
}

int txq_due(txq_t *q, uint32_t now_ms)
{
    int best = -1;
    for (uint8_t i = 0; i < TXQ_SIZE; i++) {
        txq_entry_t *e = &q->e[i];
        if (!e->used)
            continue;
        if (e->sends && (uint32_t)(now_ms - e->sent_ms) < TXQ_RETX_MS)
            continue;
        if (e->sends >= TXQ_MAX_SENDS) {
            e->used = 0;
            txq_count_drop(q);
            continue;
        }
        /* oldest first, so events keep their order */
        if (best < 0 || (uint8_t)(q->next_seq - e->seq) > (uint8_t)(q->next_seq - q->e[best].seq))
            best = i;
    }
    return best;
}

void txq_mark_sent(txq_t *q, int i, uint32_t now_ms)
{
    q->e[i].sends++;
    q->e[i].sent_ms = now_ms;
}

uint8_t txq_count(const txq_t *q)
{
    uint8_t n = 0;
    for (uint8_t i = 0; i < TXQ_SIZE; i++)
        n += q->e[i].used;
    return n;
}

/* ---- pending parts --------------------------------------------------------------------------- */
void pt_init(part_table_t *t) { memset(t, 0, sizeof(*t)); }

int pt_arm(part_table_t *t, uint32_t part_id, uint32_t deadline_ms)
{
    int free_slot = -1;
    for (uint8_t i = 0; i < PT_SIZE; i++) {
        if (t->e[i].used) {
            if (t->e[i].part_id == part_id)
                return PT_DUPLICATE;
        } else if (free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot < 0)
        return PT_FULL;
    t->e[free_slot].used = 1;
    t->e[free_slot].part_id = part_id;
    t->e[free_slot].deadline_ms = deadline_ms;
    t->count++;
    return PT_OK;
}

static void pt_remove(part_table_t *t, uint8_t i, uint32_t *part_id)
{
    if (part_id)
        *part_id = t->e[i].part_id;
    t->e[i].used = 0;
    t->count--;
}

int pt_take(part_table_t *t, uint32_t part_id)
{
    for (uint8_t i = 0; i < PT_SIZE; i++) {
        if (t->e[i].used && t->e[i].part_id == part_id) {
            pt_remove(t, i, NULL);
            return 1;
        }
    }
    return 0;
}

int pt_pop_expired(part_table_t *t, uint32_t now_ms, uint32_t *part_id)
{
    int best = -1;
    for (uint8_t i = 0; i < PT_SIZE; i++) {
        if (!t->e[i].used || (int32_t)(now_ms - t->e[i].deadline_ms) < 0)
            continue;
        /* earliest deadline first */
        if (best < 0 || (int32_t)(t->e[i].deadline_ms - t->e[best].deadline_ms) < 0)
            best = i;
    }
    if (best < 0)
        return 0;
    pt_remove(t, (uint8_t)best, part_id);
    return 1;
}

int pt_pop_any(part_table_t *t, uint32_t *part_id)
{
    for (uint8_t i = 0; i < PT_SIZE; i++) {
        if (t->e[i].used) {
            pt_remove(t, i, part_id);
            return 1;
        }
    }
    return 0;
}

/* ---- recently finished parts ----------------------------------------------------------------- */
void recent_init(recent_parts_t *r) { memset(r, 0, sizeof(*r)); }

void recent_add(recent_parts_t *r, uint32_t part_id, uint8_t outcome)
{
    r->part_id[r->head] = part_id;
    r->outcome[r->head] = outcome;
    r->head = (uint8_t)((r->head + 1u) % RECENT_SIZE);
    if (r->count < RECENT_SIZE)
        r->count++;
}

uint8_t recent_lookup(const recent_parts_t *r, uint32_t part_id)
{
    for (uint8_t k = 1; k <= r->count; k++) {
        uint8_t i = (uint8_t)((r->head + RECENT_SIZE - k) % RECENT_SIZE);
        if (r->part_id[i] == part_id)
            return r->outcome[i];
    }
    return 0;
}
