/*
 * bridge.h - the bridge's behaviour (message handling, deadlines, heartbeat, fail-safe), free of
 * hardware access. The platform (main.c on the AVR, the host test) provides the hal_* functions and
 * calls the bridge_* entry points from its main loop, never from an interrupt.
 */
#ifndef BRIDGE_H
#define BRIDGE_H

#include <stdint.h>

#include "proto.h"

#define FW_VERSION_MAJOR 0
#define FW_VERSION_MINOR 2
#define FW_VERSION_PATCH 0

/* CONFIG limits */
#define CFG_PULSE_MIN_MS 1u
#define CFG_PULSE_MAX_MS 10000u
#define CFG_HB_MIN_MS 50u
#define CFG_HB_MAX_MS 60000u
#define ARM_DEADLINE_MIN_MS 1u
#define ARM_DEADLINE_MAX_MS 60000u

typedef struct {
    uint32_t ms; /* since boot */
    uint16_t us; /* 0..999 within ms */
} mcu_time_t;

/* ---- provided by the platform ---------------------------------------------------------------- */
mcu_time_t hal_now(void);
void hal_set_ready(uint8_t on);
void hal_set_fault(uint8_t on);
/* Start a REJECT pulse of pulse_ms now, or queue it behind the one in progress. */
void hal_reject(uint16_t pulse_ms);
uint8_t hal_reject_active(void);
/* Free space in the UART transmit buffer, and a write that fits in it. */
uint8_t hal_tx_free(void);
void hal_tx_write(const uint8_t *buf, uint8_t len);

/* ---- entry points ---------------------------------------------------------------------------- */
void bridge_init(uint8_t reset_cause);
/* A received byte. */
void bridge_rx_byte(uint8_t byte);
/* A debounced part-present edge, with the time of its first (undebounced) edge. */
void bridge_trigger(mcu_time_t t);
/* Deadlines, heartbeat and (re)transmission; call on every wake-up. */
void bridge_poll(void);
/* Counters the platform adds to (UART overruns). */
void bridge_count_rx_overrun(void);

/* For tests: a snapshot of the state. */
typedef struct {
    uint8_t configured;
    uint8_t fault_code;
    uint8_t pending;
    uint8_t txq;
    uint32_t triggers;
    uint32_t decided;
    uint32_t failsafes;
} bridge_state_t;
bridge_state_t bridge_state(void);

#endif /* BRIDGE_H */
