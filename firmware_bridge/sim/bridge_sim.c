/*
 * bridge_sim.c - run the real bridge firmware (ELF) in simavr, its UART0 on a pty.
 *
 * Usage: bridge_sim [--free-run] [--trace] firmware.elf
 *   --free-run   do not pace simulated time to the wall clock (run as fast as possible)
 *   --trace      log every UART byte and flow-control change to stderr, with simulated time
 *
 * stdout: one machine-readable line per event, flushed at once; <t> is the simulated time in
 * microseconds since the harness started (monotonic across resets, exact and repeatable):
 *   PTY <path>                 first line: the pty (/dev/pts/N) to open at 115200 8N1
 *   PIN <name> <0|1> <t>       an output changed: name is REJECT, READY or FAULT. All start at 0;
 *                              the firmware's boot sets FAULT 1 about 0.5 ms in (and after a reset)
 *   IN PART_PRESENT <0|1> <t>  the input was driven as commanded
 *   RESET <t> <cause>          the MCU was reset: cause is "command" or "watchdog"; outputs that
 *                              were on are reported going to 0 first (the pins float while the
 *                              MCU restarts)
 *   TIME <t>                   answer to the TIME command
 *   STOPPED <state> <t>        the core stopped (crashed, or slept with interrupts off)
 *   ERR <text>                 an unknown or malformed command
 *   BYE <t>                    answer to QUIT, the last line
 * Everything else (simavr's own messages) goes to stderr.
 *
 * stdin: one command per line:
 *   PART_PRESENT 1|0   drive the part-present input (PD2, active low at the pin: 1 pulls it low)
 *   RESET              reset the MCU
 *   TIME               print the simulated time
 *   QUIT               exit (also on end of input)
 *
 * Pacing: the core runs in quanta of 100 us of simulated time. When it is more than 1 ms ahead of
 * the wall clock, the harness sleeps until the wall clock catches up, waking at once for a command
 * on stdin or for bytes from the host on the pty, so neither waits for the sleep to end (host bytes
 * hold the simulation until uart_pty's thread, which polls every 0.5 ms, has taken them). If the
 * simulation falls more than 20 ms behind the wall clock (a loaded machine), simulated time slips
 * instead of racing to catch up, so firmware timeouts never fire early relative to the host by
 * more than the 1 ms lead.
 *
 * Notes (see /work/shared/notes/firmware-sim.md): uart_pty_stop() can hang, so QUIT exits without
 * it; the part's /tmp/simavr-uart0 symlink is shared by parallel runs, so use the PTY line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_cycle_timers.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "sim_time.h"
#include "uart_pty.h"

/* Exported by libsimavrparts but not declared in uart_pty.h: pumps bytes from the pty into the
 * UART (from the simulation thread). The part itself calls it once per simulated ms; we call it
 * every quantum so a host byte waits at most 100 us before the UART starts receiving it. */
avr_cycle_count_t uart_pty_flush_timer(struct avr_t *avr, avr_cycle_count_t when, void *param);

#define QUANTUM_US 100u
#define MAX_LAG_US 20000u
#define MAX_LEAD_US 1000u

static const struct {
    const char *name;
    char port;
    int bit;
} OUTPUTS[] = {{"REJECT", 'B', 0}, {"READY", 'B', 1}, {"FAULT", 'B', 2}};
#define N_OUTPUTS (sizeof(OUTPUTS) / sizeof(OUTPUTS[0]))
#define PART_PORT 'D'
#define PART_BIT 2

static avr_t *avr;
static uart_pty_t pty;
static FILE *out; /* the real stdout; fd 1 is pointed at stderr for simavr's chatter */
static int out_level[N_OUTPUTS];
static avr_irq_t *out_irq[N_OUTPUTS];
static int part_present;
static avr_irq_t *part_irq;
static avr_cycle_count_t cycle_base; /* cycles before the last reset, if a reset zeroed avr->cycle */
static avr_cycle_count_t last_cycle;
static avr_cycle_count_t quantum_seen; /* cycle of the last quantum_timer call */
static int pacing = 1;
static int tracing;

static unsigned long long sim_us(void)
{
    return (unsigned long long)((cycle_base + avr->cycle) * 1000000ull / avr->frequency);
}

static unsigned long long wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u;
}

static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

static void pin_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    size_t i = (size_t)(uintptr_t)param;
    int v = value ? 1 : 0;
    if (v != out_level[i]) {
        out_level[i] = v;
        emit("PIN %s %d %llu", OUTPUTS[i].name, v, sim_us());
    }
}

static void trace_uart(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    fprintf(stderr, "%llu %s %02x xon=%d\n", sim_us(), (const char *)param, value & 0xFFu, pty.xon);
}

static void drive_part_input(void)
{
    avr_raise_irq(part_irq, part_present ? 0 : 1); /* active low, idle high (pull-up) */
}

/* A do-nothing timer that bounds how far one sleeping step advances, and pumps the pty. */
static avr_cycle_count_t quantum_timer(struct avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)param;
    quantum_seen = when;
    if (pty.xon)
        uart_pty_flush_timer(a, when, &pty);
    return when + avr_usec_to_cycles(a, QUANTUM_US);
}

static void no_sleep(avr_t *a, avr_cycle_count_t how_long)
{
    (void)a;
    (void)how_long; /* pacing is done in the main loop */
}

static void after_reset(const char *cause)
{
    if (avr->cycle < last_cycle)
        cycle_base += last_cycle;
    last_cycle = avr->cycle;
    /* The pins float (read low at the PLC) while the MCU restarts. simavr's reset does not raise
     * the pin IRQs, and they only notify changes, so pull them low here: the firmware's next
     * write is then seen as an edge. */
    for (size_t i = 0; i < N_OUTPUTS; i++)
        avr_raise_irq(out_irq[i], 0);
    avr_cycle_timer_register_usec(avr, QUANTUM_US, quantum_timer, NULL);
    quantum_seen = avr->cycle;
    drive_part_input();
    emit("RESET %llu %s", sim_us(), cause);
}

static void quit(void)
{
    emit("BYE %llu", sim_us());
    _exit(0); /* not uart_pty_stop(): it can hang; the process exit ends its thread */
}

static void command(char *line)
{
    char *nl = strpbrk(line, "\r\n");
    if (nl)
        *nl = 0;
    if (!*line)
        return;
    if (!strncmp(line, "PART_PRESENT ", 13) && (line[13] == '0' || line[13] == '1') && !line[14]) {
        part_present = line[13] == '1';
        drive_part_input();
        emit("IN PART_PRESENT %d %llu", part_present, sim_us());
    } else if (!strcmp(line, "RESET")) {
        avr_reset(avr);
        after_reset("command");
    } else if (!strcmp(line, "TIME")) {
        emit("TIME %llu", sim_us());
    } else if (!strcmp(line, "QUIT")) {
        quit();
    } else {
        emit("ERR unknown command: %.60s", line);
    }
}

static int pty_has_input(void)
{
    struct pollfd pfd = {.fd = pty.pty.s, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/* Wait up to timeout_us for stdin or host bytes on the pty; run the complete lines on stdin. */
static void serve_stdin(unsigned long long timeout_us)
{
    static char buf[512];
    static size_t len;
    struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN}, {.fd = pty.pty.s, .events = POLLIN}};
    struct timespec ts = {(time_t)(timeout_us / 1000000u), (long)(timeout_us % 1000000u) * 1000};
    /* The pty is watched only to cut a sleep short: uart_pty's thread reads it. */
    int r = ppoll(pfd, timeout_us ? 2 : 1, &ts, NULL);
    if (r > 0 && (pfd[1].revents & POLLIN) && !(pfd[0].revents & (POLLIN | POLLHUP))) {
        /* Host bytes. uart_pty's thread moves them into its fifo within 0.5 ms (its select
         * timeout); hold the simulation until it has, rather than spin ahead of the wall clock,
         * so the bytes reach the UART at the right simulated time. */
        struct timespec step = {0, 50000};
        for (int i = 0; i < 40 && pty_has_input(); i++) {
            struct pollfd in = {.fd = 0, .events = POLLIN};
            if (ppoll(&in, 1, &step, NULL) > 0) {
                pfd[0].revents = in.revents;
                break;
            }
        }
    }
    if (r <= 0 || !(pfd[0].revents & (POLLIN | POLLHUP)))
        return;
    ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        quit(); /* end of input: the parent went away */
    }
    len += (size_t)n;
    buf[len] = 0;
    char *start = buf, *nl;
    while ((nl = memchr(start, '\n', (size_t)(buf + len - start)))) {
        *nl = 0;
        command(start);
        start = nl + 1;
    }
    len = (size_t)(buf + len - start);
    memmove(buf, start, len);
    if (len == sizeof(buf) - 1) {
        emit("ERR line too long");
        len = 0;
    }
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--free-run"))
            pacing = 0;
        else if (!strcmp(argv[i], "--trace"))
            tracing = 1;
        else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: %s [--free-run] firmware.elf\n", argv[0]);
        return 2;
    }

    /* Keep the real stdout for our lines; simavr and uart_pty print to fd 1, send that to stderr. */
    int fd = dup(1);
    out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out || dup2(2, 1) < 0) {
        perror("bridge_sim: stdout");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    prctl(PR_SET_TIMERSLACK, 1UL); /* sleep to the microsecond, not the default 50 us */

    elf_firmware_t fw;
    memset(&fw, 0, sizeof(fw));
    if (elf_read_firmware(path, &fw) != 0) {
        fprintf(stderr, "bridge_sim: cannot read %s\n", path);
        return 1;
    }
    if (!fw.mmcu[0])
        strcpy(fw.mmcu, "atmega328p");
    if (!fw.frequency)
        fw.frequency = 16000000;
    avr = avr_make_mcu_by_name(fw.mmcu);
    if (!avr) {
        fprintf(stderr, "bridge_sim: unknown MCU %s\n", fw.mmcu);
        return 1;
    }
    avr_init(avr);
    avr_load_firmware(avr, &fw);
    avr->sleep = no_sleep;
    avr->log = 1; /* errors and warnings only */

    uart_pty_init(avr, &pty);
    uart_pty_connect(&pty, '0');
    if (!pty.pty.slavename[0]) {
        fprintf(stderr, "bridge_sim: no pty\n");
        return 1;
    }

    if (tracing) {
        static const char *names[] = {"host->mcu", "mcu->host", "xon", "xoff"};
        for (int k = UART_IRQ_INPUT; k <= UART_IRQ_OUT_XOFF; k++)
            avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), k), trace_uart,
                                    (void *)names[k]);
    }
    for (size_t i = 0; i < N_OUTPUTS; i++) {
        out_irq[i] = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(OUTPUTS[i].port), OUTPUTS[i].bit);
        avr_irq_register_notify(out_irq[i], pin_changed, (void *)(uintptr_t)i);
    }
    part_irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(PART_PORT), PART_BIT);
    drive_part_input();
    avr_cycle_timer_register_usec(avr, QUANTUM_US, quantum_timer, NULL);

    emit("PTY %s", pty.pty.slavename);

    const avr_cycle_count_t quantum = avr_usec_to_cycles(avr, QUANTUM_US);
    avr_cycle_count_t next_pace = avr->cycle + quantum;
    unsigned long long wall0 = wall_us();
    unsigned quanta = 0;
    for (;;) {
        int state = avr_run(avr);
        if (state == cpu_Done || state == cpu_Crashed) {
            emit("STOPPED %s %llu", state == cpu_Done ? "done" : "crashed", sim_us());
            for (;;)
                serve_stdin(1000000); /* RESET or QUIT */
        }
        if (avr->cycle < next_pace && avr->cycle >= last_cycle)
            continue;
        if (avr->cycle < last_cycle || avr->cycle - quantum_seen > 2 * quantum)
            after_reset("watchdog"); /* our timer is gone: the core reset itself */
        last_cycle = avr->cycle;
        next_pace = avr->cycle + quantum;

        unsigned long long sim = sim_us(), wall = wall_us() - wall0;
        if (wall > sim + MAX_LAG_US) {
            wall0 += wall - sim - MAX_LAG_US; /* slip */
            wall = sim + MAX_LAG_US;
        }
        if (pacing && sim > wall + MAX_LEAD_US)
            serve_stdin(sim - wall);
        else if (++quanta % 10 == 0)
            serve_stdin(0); /* running behind, or free-running: still read stdin every ms */
    }
}
