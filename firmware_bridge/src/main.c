/*
 * main.c - ATmega328P @ 16 MHz: the registers, the interrupts and the sleep loop. The behaviour is
 * in bridge.c, the protocol in proto.c.
 *
 * Pins (Arduino Nano/Uno names in brackets); outputs are active high (pin high = opto on):
 *   PB0 [D8]  REJECT         output, one pulse of the configured length per rejected part
 *   PB1 [D9]  READY          output, on while configured and the host's heartbeat is alive
 *   PB2 [D10] FAULT          output, on after reset and after a heartbeat loss
 *   PD2 [D2]  PART_PRESENT   input (INT0), active low, internal pull-up, debounced 3 ms
 *   PD0/PD1   UART0 RX/TX    115200 8N1 (USB serial)
 *
 * Timer1 (CTC, clk/8 = 0.5 us per count, TOP 1999) gives the 1 ms tick and sub-ms time stamps;
 * OCR1B ends a REJECT pulse at its exact length. The watchdog (250 ms) resets a hung firmware,
 * which puts the outputs back in the safe state.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <stdint.h>

#include "bridge.h"

#ifdef SIMAVR
#include "avr_mcu_section.h"
AVR_MCU(F_CPU, "atmega328p");
#endif

#ifndef BAUD
#define BAUD 115200UL
#endif

#define PIN_REJECT PB0
#define PIN_READY PB1
#define PIN_FAULT PB2
#define PIN_PART PD2

#define DEBOUNCE_MS 3u
#define TICK_COUNTS 2000u /* Timer1 counts per ms */

/* ---- reset cause: read MCUSR and stop the watchdog before anything else ------------------- */
static uint8_t mcusr_copy __attribute__((section(".noinit")));
void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void)
{
    mcusr_copy = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

/* ---- time -------------------------------------------------------------------------------------- */
static volatile uint32_t g_ms;
static volatile uint8_t tick_pending; /* set by each tick, cleared by the main loop */

/* Interrupts must be off. */
static mcu_time_t now_locked(void)
{
    uint32_t ms = g_ms;
    uint16_t t = TCNT1;
    if ((TIFR1 & _BV(OCF1A)) && t < TICK_COUNTS / 2)
        ms++; /* the counter wrapped but the tick interrupt has not run yet */
    mcu_time_t r = {ms, (uint16_t)(t / 2)};
    return r;
}

mcu_time_t hal_now(void)
{
    uint8_t s = SREG;
    cli();
    mcu_time_t r = now_locked();
    SREG = s;
    return r;
}

/* ---- outputs ----------------------------------------------------------------------------------- */
void hal_set_ready(uint8_t on)
{
    if (on)
        PORTB |= _BV(PIN_READY);
    else
        PORTB &= (uint8_t)~_BV(PIN_READY);
}

void hal_set_fault(uint8_t on)
{
    if (on)
        PORTB |= _BV(PIN_FAULT);
    else
        PORTB &= (uint8_t)~_BV(PIN_FAULT);
}

/* REJECT pulses: one at a time, further ones queued, separated by a gap as long as the pulse. */
static volatile uint8_t rej_active;
static volatile uint8_t rej_queued;
static volatile uint16_t rej_ms_left; /* ticks until the end compare is armed (active) or gap left */
static volatile uint16_t rej_tcnt;    /* TCNT1 at the pulse start: the end falls at the same count */
static volatile uint16_t rej_len_ms;

/* Interrupts must be off. */
static void pulse_start(void)
{
    PORTB |= _BV(PIN_REJECT);
    rej_tcnt = TCNT1;
    rej_active = 1;
    rej_ms_left = rej_len_ms;
}

static void pulse_end(void)
{
    PORTB &= (uint8_t)~_BV(PIN_REJECT);
    TIMSK1 &= (uint8_t)~_BV(OCIE1B);
    rej_active = 0;
    rej_ms_left = rej_len_ms; /* the gap before a queued pulse */
}

void hal_reject(uint16_t pulse_ms)
{
    cli();
    rej_len_ms = pulse_ms;
    if (!rej_active && rej_ms_left == 0)
        pulse_start();
    else if (rej_queued < 255)
        rej_queued++;
    sei();
}

uint8_t hal_reject_active(void) { return rej_active; }

/* ---- part-present input: INT0 stamps the first edge, the tick debounces ----------------------- */
static volatile uint8_t deb_busy, deb_level, deb_stable, part_present;
static volatile mcu_time_t deb_edge;
static volatile uint8_t trig_pending;
static volatile mcu_time_t trig_time;

ISR(INT0_vect)
{
    if (!deb_busy) {
        deb_busy = 1;
        deb_stable = 0;
        deb_level = (uint8_t)!(PIND & _BV(PIN_PART));
        mcu_time_t t = now_locked();
        deb_edge.ms = t.ms;
        deb_edge.us = t.us;
    }
}

static void debounce_tick(void)
{
    uint8_t level = (uint8_t)!(PIND & _BV(PIN_PART)); /* 1 = part present */
    if (level != deb_level) {
        deb_level = level;
        deb_stable = 0;
        return;
    }
    if (++deb_stable < DEBOUNCE_MS)
        return;
    deb_busy = 0;
    if (level != part_present) {
        part_present = level;
        if (level) {
            trig_time.ms = deb_edge.ms;
            trig_time.us = deb_edge.us;
            trig_pending = 1;
        }
    }
}

ISR(TIMER1_COMPA_vect)
{
    g_ms++;
    tick_pending = 1;
    if (deb_busy)
        debounce_tick();
    if (rej_ms_left) {
        if (--rej_ms_left == 0) {
            if (rej_active) {
                /* the end is due in this ms, when TCNT1 reaches its start value again */
                if (rej_tcnt <= TCNT1 + 2u) {
                    pulse_end();
                } else {
                    OCR1B = rej_tcnt;
                    TIFR1 = _BV(OCF1B);
                    TIMSK1 |= _BV(OCIE1B);
                }
            } else if (rej_queued) {
                rej_queued--;
                pulse_start();
            }
        }
    }
}

ISR(TIMER1_COMPB_vect) { pulse_end(); }

/* ---- UART: interrupt-driven ring buffers ------------------------------------------------------ */
#define RX_SIZE 64u  /* powers of two */
#define TX_SIZE 128u
static volatile uint8_t rx_buf[RX_SIZE], rx_head, rx_tail;
static volatile uint8_t tx_buf[TX_SIZE], tx_head, tx_tail;
static volatile uint8_t rx_overrun;

ISR(USART_RX_vect)
{
    uint8_t status = UCSR0A;
    uint8_t b = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1u) & (RX_SIZE - 1u));
    if (next == rx_tail || (status & (_BV(DOR0) | _BV(FE0)))) {
        rx_overrun = 1;
        if (next == rx_tail)
            return;
    }
    rx_buf[rx_head] = b;
    rx_head = next;
}

ISR(USART_UDRE_vect)
{
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx_buf[tx_tail];
    tx_tail = (uint8_t)((tx_tail + 1u) & (TX_SIZE - 1u));
}

uint8_t hal_tx_free(void)
{
    return (uint8_t)((tx_tail - tx_head - 1u) & (TX_SIZE - 1u));
}

void hal_tx_write(const uint8_t *buf, uint8_t len)
{
    while (len--) {
        tx_buf[tx_head] = *buf++;
        tx_head = (uint8_t)((tx_head + 1u) & (TX_SIZE - 1u));
    }
    UCSR0B |= _BV(UDRIE0);
}

static void uart_init(void)
{
    /* U2X0 first: simavr recomputes the baud rate only when UBRR0L is written. */
    UCSR0A = _BV(U2X0);
    uint16_t ubrr = (uint16_t)((F_CPU / (8UL * BAUD)) - 1UL); /* 16 for 115200: 117647 baud, +2.1% */
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

/* ---- main ------------------------------------------------------------------------------------ */
int main(void)
{
    /* safe state first: FAULT on, READY and REJECT off */
    PORTB = _BV(PIN_FAULT);
    DDRB = _BV(PIN_REJECT) | _BV(PIN_READY) | _BV(PIN_FAULT);
    DDRD &= (uint8_t)~_BV(PIN_PART);
    PORTD |= _BV(PIN_PART); /* pull-up */

    TCCR1A = 0;
    OCR1A = TICK_COUNTS - 1u;
    TCCR1B = _BV(WGM12) | _BV(CS11); /* CTC on OCR1A, clk/8 */
    TIMSK1 = _BV(OCIE1A);

    EICRA = _BV(ISC00); /* INT0 on any edge */
    EIFR = _BV(INTF0);
    EIMSK = _BV(INT0);

    uart_init();
    bridge_init(mcusr_copy);
    part_present = (uint8_t)!(PIND & _BV(PIN_PART)); /* a part already present is no new trigger */
    wdt_enable(WDTO_250MS);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sei();

    for (;;) {
        uint8_t work = 0;
        wdt_reset();
        while (rx_tail != rx_head) {
            uint8_t b = rx_buf[rx_tail];
            rx_tail = (uint8_t)((rx_tail + 1u) & (RX_SIZE - 1u));
            bridge_rx_byte(b);
            work = 1;
        }
        if (rx_overrun) {
            rx_overrun = 0;
            bridge_count_rx_overrun();
        }
        if (trig_pending) {
            cli();
            mcu_time_t t = {trig_time.ms, trig_time.us};
            trig_pending = 0;
            sei();
            bridge_trigger(t);
            work = 1;
        }
        if (tick_pending) {
            tick_pending = 0;
            work = 1;
        }
        /* Deadlines, heartbeat and sending: after new input and once per ms, which keeps the
         * 128-byte transmit buffer (11 ms of line time) from running dry. Wake-ups by the UART
         * transmit interrupt alone cost nothing more than this loop's checks. */
        if (work)
            bridge_poll();

        /* Sleep until the next interrupt, unless one arrived while we were busy. */
        cli();
        if (rx_tail == rx_head && !trig_pending && !tick_pending) {
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
