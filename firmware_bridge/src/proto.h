/*
 * proto.h - the bridge protocol core, shared by the firmware and the host tests.
 *
 * Plain C99, no hardware access, no dynamic memory. See ../PROTOCOL.md for the wire format.
 *   - CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)
 *   - COBS framing, 0x00 delimiter
 *   - frame = COBS(type u8 | seq u8 | payload | crc16 LE) 0x00
 *   - receive history for duplicate detection, transmit queue for retransmission
 *   - the pending-parts table (armed parts and their deadlines)
 */
#ifndef PROTO_H
#define PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1u

#define PROTO_MAX_PAYLOAD 32u
#define PROTO_HEADER_LEN 2u                 /* type, seq */
#define PROTO_CRC_LEN 2u
#define PROTO_MIN_RAW (PROTO_HEADER_LEN + PROTO_CRC_LEN)
#define PROTO_MAX_RAW (PROTO_HEADER_LEN + PROTO_MAX_PAYLOAD + PROTO_CRC_LEN)
/* COBS adds one byte per 254 (raw <= 254 here), plus the 0x00 delimiter. */
#define PROTO_MAX_ENCODED (PROTO_MAX_RAW + 1u + 1u)

/* Message types. Host -> bridge: 0x01..0x3F, bridge -> host: 0x40..0x7F, both: 0x80.. */
enum proto_type {
    MSG_HELLO = 0x01,
    MSG_CONFIG = 0x02,
    MSG_ARM = 0x03,
    MSG_DECIDE = 0x04,
    MSG_HEARTBEAT = 0x05,
    MSG_STATUS_REQ = 0x06,
    MSG_STATION = 0x07,

    MSG_TRIGGER = 0x41,
    MSG_APPLIED = 0x42,
    MSG_FAILSAFE = 0x43,
    MSG_FAULT = 0x44,
    MSG_STATUS = 0x45,
    MSG_INFO = 0x46,

    MSG_ACK = 0x80,
    MSG_NAK = 0x81,
};

/* Payload lengths (bytes, exact). */
enum proto_len {
    LEN_HELLO = 8,
    LEN_CONFIG = 6,
    LEN_ARM = 6,
    LEN_DECIDE = 5,
    LEN_HEARTBEAT = 0,
    LEN_STATUS_REQ = 0,
    LEN_STATION = 1,
    LEN_TRIGGER = 10,
    LEN_APPLIED = 11,
    LEN_FAILSAFE = 12,
    LEN_FAULT = 6,
    LEN_STATUS = 24,
    LEN_INFO = 10,
    LEN_ACK = 0,
    LEN_NAK = 1,
};

enum proto_nak_reason {
    NAK_UNKNOWN_TYPE = 1,
    NAK_BAD_LENGTH = 2,
    NAK_BAD_VALUE = 3,
    NAK_VERSION = 4,
    NAK_NOT_CONFIGURED = 5,
    NAK_TABLE_FULL = 6,
    NAK_DUPLICATE_PART = 7,
    NAK_UNKNOWN_PART = 8,
    NAK_PART_FAILSAFED = 9,
    NAK_PART_DECIDED = 10,
};

enum proto_verdict { VERDICT_PASS = 0, VERDICT_REJECT = 1 };
enum proto_failsafe_reason { FS_DEADLINE = 1, FS_HEARTBEAT = 2 };
/* FAULT_STATION: the host said it cannot do its job (it cannot record): READY off, FAULT on, but
 * the bridge stays configured and goes on applying the host's decisions and its own fail-safe. */
enum proto_fault_code { FAULT_NOT_CONFIGURED = 1, FAULT_HEARTBEAT_LOST = 2, FAULT_STATION = 3 };

/* STATUS flags */
#define STATUS_CONFIGURED 0x01u
#define STATUS_READY 0x02u
#define STATUS_FAULT 0x04u
#define STATUS_REJECT_ACTIVE 0x08u

/* Expected payload length of a message type, or -1 if the type is unknown. */
int proto_expected_len(uint8_t type);

/* ---- CRC, COBS ------------------------------------------------------------------------------- */
uint16_t proto_crc16(const uint8_t *data, size_t len);
uint16_t proto_crc16_update(uint16_t crc, uint8_t byte);

/* Encode len bytes; out needs len + len/254 + 1 bytes. Returns the encoded length (no delimiter). */
size_t cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* Decode; returns the decoded length, or -1 on a malformed input or if out_cap is too small. */
int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* ---- frames ---------------------------------------------------------------------------------- */
typedef struct {
    uint8_t type;
    uint8_t seq;
    uint8_t len;
    uint16_t crc; /* the frame's CRC, part of the duplicate-detection key */
    uint8_t payload[PROTO_MAX_PAYLOAD];
} proto_frame_t;

/* Raw (unencoded) frame with CRC into out[PROTO_MAX_RAW]. Returns its length, 0 if len too big. */
size_t proto_frame_raw(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out);
/* COBS-encode a raw frame and append the 0x00 delimiter; out[PROTO_MAX_ENCODED]. */
size_t proto_encode_raw(const uint8_t *raw, size_t raw_len, uint8_t *out);
/* Both steps. Returns the number of bytes to send (including the delimiter), 0 if len too big. */
size_t proto_frame_build(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out);
/* Parse one decoded (un-COBSed) frame: 1 if the CRC and length are good, 0 otherwise. */
int proto_frame_parse(const uint8_t *raw, size_t len, proto_frame_t *out);

/* Stream deframer: feed bytes one at a time; returns 1 when *out holds a frame with a good CRC. */
typedef struct {
    uint8_t buf[PROTO_MAX_ENCODED];
    uint8_t len;
    uint8_t overflow;
    uint16_t bad_frames; /* garbled, oversized or CRC-failed frames dropped (saturating) */
} proto_deframer_t;

void proto_deframer_init(proto_deframer_t *d);
int proto_deframer_feed(proto_deframer_t *d, uint8_t byte, proto_frame_t *out);

/* ---- little-endian helpers ------------------------------------------------------------------- */
static inline void put_u16le(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t get_u16le(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static inline uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- sequence numbers ------------------------------------------------------------------------ */
static inline uint8_t seq_next(uint8_t s) { return (uint8_t)(s + 1u); }

/* Receive history: the last SEQH_SIZE frames received, keyed by (seq, crc), and the answer given
 * to each (0 = ACK, else a NAK reason), so a retransmitted frame (byte-identical) is answered again
 * and not re-applied. The sender keeps at most SEQH_SIZE / 2 frames unacknowledged. */
#define SEQH_SIZE 16u
typedef struct {
    uint8_t seq[SEQH_SIZE];
    uint16_t crc[SEQH_SIZE];
    uint8_t answer[SEQH_SIZE];
    uint8_t count;
    uint8_t head;
} seq_history_t;

void seqh_init(seq_history_t *h);
/* Returns 1 and sets *answer if the frame (seq, crc) was seen, 0 otherwise. */
int seqh_lookup(const seq_history_t *h, uint8_t seq, uint16_t crc, uint8_t *answer);
void seqh_add(seq_history_t *h, uint8_t seq, uint16_t crc, uint8_t answer);

/* Transmit queue: sequenced frames kept until ACKed, resent after TXQ_RETX_MS, dropped after
 * TXQ_MAX_SENDS transmissions. Frames are stored raw (with CRC); encoding is done at send time. */
#define TXQ_SIZE 20u /* room for a FAULT and a FAILSAFE for every pending part */
#define TXQ_RETX_MS 50u
#define TXQ_MAX_SENDS 5u
typedef struct {
    uint8_t used;
    uint8_t seq;
    uint8_t sends;
    uint8_t len;
    uint32_t sent_ms;
    uint8_t raw[PROTO_HEADER_LEN + LEN_STATUS + PROTO_CRC_LEN]; /* largest bridge->host frame */
} txq_entry_t;
typedef struct {
    txq_entry_t e[TXQ_SIZE];
    uint8_t next_seq;
    uint16_t dropped; /* frames given up on, or pushed out of a full queue (saturating) */
} txq_t;

void txq_init(txq_t *q);
/* Queue a message with the next sequence number. If the queue is full the oldest frame is dropped
 * (and counted). Returns the sequence number used. len must fit the entry. */
uint8_t txq_push(txq_t *q, uint8_t type, const uint8_t *payload, uint8_t len);
/* Remove the frame with this seq; 1 if it was queued. */
int txq_ack(txq_t *q, uint8_t seq);
/* Index of a frame due for (re)transmission at now_ms, or -1. Frames that have been sent
 * TXQ_MAX_SENDS times and are due again are dropped (and counted) here. */
int txq_due(txq_t *q, uint32_t now_ms);
/* Mark entry i as sent at now_ms. */
void txq_mark_sent(txq_t *q, int i, uint32_t now_ms);
uint8_t txq_count(const txq_t *q);

/* ---- pending-parts table --------------------------------------------------------------------- */
#define PT_SIZE 16u
typedef struct {
    uint32_t part_id;
    uint32_t deadline_ms; /* absolute MCU time */
    uint8_t used;
} pt_entry_t;
typedef struct {
    pt_entry_t e[PT_SIZE];
    uint8_t count;
} part_table_t;

enum pt_result { PT_OK = 0, PT_FULL = 1, PT_DUPLICATE = 2 };

void pt_init(part_table_t *t);
int pt_arm(part_table_t *t, uint32_t part_id, uint32_t deadline_ms);
/* Remove a part; 1 if it was pending. */
int pt_take(part_table_t *t, uint32_t part_id);
/* Remove and return (via *part_id) one part whose deadline is at or before now_ms (wrap-safe). */
int pt_pop_expired(part_table_t *t, uint32_t now_ms, uint32_t *part_id);
/* Remove and return any pending part (for heartbeat loss). */
int pt_pop_any(part_table_t *t, uint32_t *part_id);

/* Recently finished parts, to tell "failsafed" and "already decided" from "unknown". */
#define RECENT_SIZE 16u
typedef struct {
    uint32_t part_id[RECENT_SIZE];
    uint8_t outcome[RECENT_SIZE]; /* NAK_PART_FAILSAFED or NAK_PART_DECIDED */
    uint8_t count;
    uint8_t head;
} recent_parts_t;

void recent_init(recent_parts_t *r);
void recent_add(recent_parts_t *r, uint32_t part_id, uint8_t outcome);
/* The outcome recorded for part_id (newest first), or 0 if not recent. */
uint8_t recent_lookup(const recent_parts_t *r, uint32_t part_id);

#endif /* PROTO_H */
