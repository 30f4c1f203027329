/*
 * A reference hall-twin gateway in C against libzmq, written from docs/protocol.md alone.
 *
 * It publishes the telemetry of one Kestrel K1 robot (model kestrel_k1, Kestrel Robotics)
 * to the twin's ingest endpoint for a number of seconds:
 *
 *   js/<robot>    joint states, 500 Hz, encoding packed_f32: 27 positions (rad),
 *                 27 velocities (rad/s), 27 efforts (N*m), float32 little-endian, wire order
 *   base/<robot>  base pose and IMU, 100 Hz, MessagePack map (encoded by hand below)
 *   hb/<robot>    heartbeat, 10 Hz, MessagePack map; a last one with mode "shutdown"
 *
 * Each message is one ZeroMQ multipart message of three parts: topic, 32-byte header,
 * payload. Every stream (topic) has its own seq from 0; the epoch is one random non-zero
 * 64-bit value per start of this program, shared by its three streams.
 *
 * The joints follow a known pattern (a slow wave about a safe pose, within every joint's
 * limits): position[i] = CENTRE[i] + 0.05 sin(2 pi 0.5 t + 0.25 i), t in seconds since start.
 *
 * Build:  cc -O2 -Wall -Wextra -o gateway gateway.c $(pkg-config --cflags --libs libzmq) -lm
 * Run:    ./gateway ENDPOINT ROBOT_ID SECONDS [X Y YAW_DEG]
 *         e.g. ./gateway tcp://127.0.0.1:7700 K1-01 10 6 6 -90
 *         X, Y (m, hall frame) and YAW_DEG place the base; default 0 0 0.
 *
 * On exit it prints one JSON line on stdout: the robot, the epoch, how many messages it
 * sent per stream and the positions (rad, wire order) of the last joint state sent.
 * Exit status: 0 done, 1 bad arguments, 2 no subscription from the twin within 10 s or a
 * ZeroMQ error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

/* ---- the robot model (robots/kestrel_k1/robot.yaml, `twin robots --json`) ------------ */

#define MANUFACTURER "Kestrel Robotics"
#define MODEL "kestrel_k1"
#define N_JOINTS 27
#define JOINT_RATE_HZ 500.0
#define BASE_RATE_HZ 100.0
#define HEARTBEAT_RATE_HZ 10.0
#define BASE_HEIGHT_M 0.94875 /* standing.base_height_m: pelvis origin above the floor */

/* wire order: the payload's joint order (documented; the array is informative here) */
static const char *const WIRE_ORDER[N_JOINTS] = {
    "l_hip_yaw_joint",        "l_hip_roll_joint",       "l_hip_pitch_joint",
    "l_knee_joint",           "l_ankle_pitch_joint",    "l_ankle_roll_joint",
    "r_hip_yaw_joint",        "r_hip_roll_joint",       "r_hip_pitch_joint",
    "r_knee_joint",           "r_ankle_pitch_joint",    "r_ankle_roll_joint",
    "torso_yaw_joint",        "neck_yaw_joint",         "neck_pitch_joint",
    "l_shoulder_pitch_joint", "l_shoulder_roll_joint",  "l_shoulder_yaw_joint",
    "l_elbow_joint",          "l_wrist_yaw_joint",      "l_wrist_pitch_joint",
    "r_shoulder_pitch_joint", "r_shoulder_roll_joint",  "r_shoulder_yaw_joint",
    "r_elbow_joint",          "r_wrist_yaw_joint",      "r_wrist_pitch_joint",
};

/* the pose the wave swings about (rad): knees a little bent, elbows too (their limits
 * are 0..2.4 and -2.5..0), everything else at zero */
static const double CENTRE[N_JOINTS] = {
    0.0, 0.0, -0.1, 0.2, -0.1, 0.0, /* left leg */
    0.0, 0.0, -0.1, 0.2, -0.1, 0.0, /* right leg */
    0.0, 0.0, 0.0,                  /* torso, neck */
    0.0, 0.1, 0.0, -0.3, 0.0, 0.0,  /* left arm */
    0.0, -0.1, 0.0, -0.3, 0.0, 0.0, /* right arm */
};
#define WAVE_AMPLITUDE_RAD 0.05
#define WAVE_HZ 0.5
#define WAVE_PHASE_STEP 0.25

/* ---- the protocol (docs/protocol.md) --------------------------------------------------- */

enum { KIND_JOINT_STATE = 1, KIND_HEARTBEAT = 2, KIND_BASE = 3 };
#define HEADER_SIZE 32
#define GATEWAY_SNDHWM 10000
#define SUBSCRIPTION_TIMEOUT_MS 10000

typedef struct {
    const char *prefix; /* "js", "hb", "base" */
    uint8_t kind;
    char topic[160]; /* "<prefix>/<robot id>", at most 128 bytes */
    size_t topic_len;
    uint64_t next_seq; /* per stream, 0 first */
    uint64_t sent;
} Stream;

static void put_u32le(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f32le(uint8_t *p, float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    put_u32le(p, bits);
}

/* header `<2sBBIQqQ`: magic "HT", version 1, kind, reserved 0, seq, stamp_ns, epoch */
static void pack_header(uint8_t out[HEADER_SIZE], uint8_t kind, uint64_t seq, int64_t stamp_ns,
                        uint64_t epoch) {
    out[0] = 'H';
    out[1] = 'T';
    out[2] = 1;
    out[3] = kind;
    put_u32le(out + 4, 0);
    put_u64le(out + 8, seq);
    put_u64le(out + 16, (uint64_t)stamp_ns);
    put_u64le(out + 24, epoch);
}

/* ---- MessagePack, just what the heartbeat and base maps need (big-endian, per the spec) -- */

typedef struct {
    uint8_t buf[512];
    size_t len;
} Pack;

static void mp_byte(Pack *p, uint8_t b) {
    if (p->len < sizeof p->buf) p->buf[p->len++] = b;
}
static void mp_map(Pack *p, unsigned n) { mp_byte(p, (uint8_t)(0x80 | n)); } /* fixmap, n < 16 */
static void mp_array(Pack *p, unsigned n) { mp_byte(p, (uint8_t)(0x90 | n)); } /* fixarray */
static void mp_bool(Pack *p, int b) { mp_byte(p, b ? 0xc3 : 0xc2); }
static void mp_str(Pack *p, const char *s) {
    size_t n = strlen(s);
    if (n < 32) {
        mp_byte(p, (uint8_t)(0xa0 | n)); /* fixstr */
    } else {
        mp_byte(p, 0xd9); /* str 8 */
        mp_byte(p, (uint8_t)n);
    }
    for (size_t i = 0; i < n; i++) mp_byte(p, (uint8_t)s[i]);
}
static void mp_f64(Pack *p, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    mp_byte(p, 0xcb); /* float 64 */
    for (int i = 7; i >= 0; i--) mp_byte(p, (uint8_t)(bits >> (8 * i)));
}
static void mp_vec(Pack *p, const double *v, unsigned n) {
    mp_array(p, n);
    for (unsigned i = 0; i < n; i++) mp_f64(p, v[i]);
}

/* ---- clocks, randomness, signals ------------------------------------------------------- */

static int64_t wall_ns(void) { /* stamp_ns: the sender's clock, ns since the Unix epoch */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t mono_ns(void) { /* for pacing: never jumps */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until_mono(int64_t t_ns) {
    struct timespec ts = {.tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static uint64_t new_epoch(void) { /* random, non-zero, one per start */
    uint64_t epoch = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f != NULL) {
        if (fread(&epoch, sizeof epoch, 1, f) != 1) epoch = 0;
        fclose(f);
    }
    if (epoch == 0) epoch = (uint64_t)wall_ns() ^ ((uint64_t)mono_ns() << 17);
    return epoch | 1; /* never 0 */
}

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ---- sending ------------------------------------------------------------------------- */

static int send_message(void *socket, Stream *s, uint64_t epoch, int64_t stamp_ns,
                        const void *payload, size_t payload_len) {
    uint8_t header[HEADER_SIZE];
    pack_header(header, s->kind, s->next_seq, stamp_ns, epoch);
    /* three parts of one multipart message: topic, header, payload */
    if (zmq_send(socket, s->topic, s->topic_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(socket, header, HEADER_SIZE, ZMQ_SNDMORE) < 0 ||
        zmq_send(socket, payload, payload_len, 0) < 0) {
        fprintf(stderr, "gateway: send %s: %s\n", s->topic, zmq_strerror(zmq_errno()));
        return -1;
    }
    s->next_seq++;
    s->sent++;
    return 0;
}

static void joint_pattern(double t_s, double pos[N_JOINTS], double vel[N_JOINTS]) {
    const double w = 2.0 * M_PI * WAVE_HZ;
    for (int i = 0; i < N_JOINTS; i++) {
        double phase = w * t_s + WAVE_PHASE_STEP * i;
        pos[i] = CENTRE[i] + WAVE_AMPLITUDE_RAD * sin(phase);
        vel[i] = WAVE_AMPLITUDE_RAD * w * cos(phase);
    }
}

static size_t joint_payload(uint8_t out[3 * N_JOINTS * 4], const double pos[N_JOINTS],
                            const double vel[N_JOINTS], float sent_pos[N_JOINTS]) {
    for (int i = 0; i < N_JOINTS; i++) {
        sent_pos[i] = (float)pos[i];
        put_f32le(out + 4 * i, sent_pos[i]);                         /* positions, rad */
        put_f32le(out + 4 * (N_JOINTS + i), (float)vel[i]);          /* velocities, rad/s */
        put_f32le(out + 4 * (2 * N_JOINTS + i), 0.0f);               /* efforts, N*m */
    }
    return 3 * N_JOINTS * 4;
}

static size_t heartbeat_payload(Pack *p, const char *mode) {
    p->len = 0;
    mp_map(p, 5);
    mp_str(p, "mode");
    mp_str(p, mode);
    mp_str(p, "estop");
    mp_bool(p, 0);
    mp_str(p, "protective_stop");
    mp_bool(p, 0);
    mp_str(p, "manufacturer");
    mp_str(p, MANUFACTURER);
    mp_str(p, "model");
    mp_str(p, MODEL);
    return p->len;
}

static size_t base_payload(Pack *p, double x, double y, double yaw_rad) {
    const double position[3] = {x, y, BASE_HEIGHT_M};
    const double orientation[4] = {0.0, 0.0, sin(yaw_rad / 2.0), cos(yaw_rad / 2.0)};
    const double zero[3] = {0.0, 0.0, 0.0};
    const double imu[3] = {0.0, 0.0, 9.81}; /* standing still: the IMU feels +g on z */
    p->len = 0;
    mp_map(p, 5);
    mp_str(p, "position_m");
    mp_vec(p, position, 3);
    mp_str(p, "orientation_xyzw");
    mp_vec(p, orientation, 4);
    mp_str(p, "linear_velocity_m_s");
    mp_vec(p, zero, 3);
    mp_str(p, "angular_velocity_rad_s");
    mp_vec(p, zero, 3);
    mp_str(p, "linear_acceleration_m_s2");
    mp_vec(p, imu, 3);
    return p->len;
}

static int parse_double(const char *text, const char *what, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "gateway: %s %s: not a number\n", what, text);
        return -1;
    }
    *out = v;
    return 0;
}

static void init_stream(Stream *s, const char *prefix, uint8_t kind, const char *robot) {
    memset(s, 0, sizeof *s);
    s->prefix = prefix;
    s->kind = kind;
    snprintf(s->topic, sizeof s->topic, "%s/%s", prefix, robot);
    s->topic_len = strlen(s->topic);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: %s ENDPOINT ROBOT_ID SECONDS [X Y YAW_DEG]\n", argv[0]);
        return 1;
    }
    const char *endpoint = argv[1];
    const char *robot = argv[2];
    double seconds = 0.0, x = 0.0, y = 0.0, yaw_deg = 0.0;
    if (strlen(robot) == 0 || strlen(robot) > 120) {
        fprintf(stderr, "gateway: robot id must be 1 to 120 characters\n");
        return 1;
    }
    if (parse_double(argv[3], "SECONDS", &seconds) != 0 || seconds <= 0.0) return 1;
    if (argc == 7 && (parse_double(argv[4], "X", &x) != 0 || parse_double(argv[5], "Y", &y) != 0 ||
                      parse_double(argv[6], "YAW_DEG", &yaw_deg) != 0))
        return 1;

    Stream js, hb, base;
    init_stream(&js, "js", KIND_JOINT_STATE, robot);
    init_stream(&hb, "hb", KIND_HEARTBEAT, robot);
    init_stream(&base, "base", KIND_BASE, robot);
    const uint64_t epoch = new_epoch();

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    void *context = zmq_ctx_new();
    /* XPUB is PUB on the wire and also hears the twin's subscription */
    void *socket = zmq_socket(context, ZMQ_XPUB);
    int hwm = GATEWAY_SNDHWM, linger = 0;
    int status = 2;
    if (socket == NULL || zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(socket, endpoint) != 0) {
        fprintf(stderr, "gateway: %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }

    /* wait for the subscription (one byte, 0x01: subscribe to everything) before sending:
     * a PUB drops whatever it sends before the subscriber's subscription has arrived */
    zmq_pollitem_t item = {.socket = socket, .events = ZMQ_POLLIN};
    int64_t give_up = mono_ns() + (int64_t)SUBSCRIPTION_TIMEOUT_MS * 1000000LL;
    int subscribed = 0;
    while (!subscribed && !stop_requested && mono_ns() < give_up) {
        int n = zmq_poll(&item, 1, 100);
        if (n < 0 && zmq_errno() != EINTR) break;
        if (n > 0) {
            uint8_t sub[256];
            int len = zmq_recv(socket, sub, sizeof sub, 0);
            subscribed = len >= 1 && sub[0] == 1;
        }
    }
    if (!subscribed) {
        fprintf(stderr, "gateway: no subscription from the twin at %s within %d s\n", endpoint,
                SUBSCRIPTION_TIMEOUT_MS / 1000);
        goto done;
    }
    fprintf(stderr, "gateway: %s -> %s, epoch %llu, %g s\n", robot, endpoint,
            (unsigned long long)epoch, seconds);

    const int64_t period_ns = (int64_t)(1e9 / JOINT_RATE_HZ);
    const int64_t base_every = (int64_t)(JOINT_RATE_HZ / BASE_RATE_HZ);      /* 5 ticks */
    const int64_t hb_every = (int64_t)(JOINT_RATE_HZ / HEARTBEAT_RATE_HZ);   /* 50 ticks */
    const int64_t ticks = (int64_t)(seconds * JOINT_RATE_HZ);
    const double yaw_rad = yaw_deg * M_PI / 180.0;
    const int64_t start = mono_ns();
    double pos[N_JOINTS], vel[N_JOINTS];
    float last_sent[N_JOINTS] = {0};
    uint8_t js_payload[3 * N_JOINTS * 4];
    Pack pack;
    status = 0;
    for (int64_t tick = 0; tick < ticks && !stop_requested; tick++) {
        sleep_until_mono(start + tick * period_ns); /* absolute deadlines: no drift */
        const int64_t stamp = wall_ns();
        joint_pattern((double)tick / JOINT_RATE_HZ, pos, vel);
        size_t n = joint_payload(js_payload, pos, vel, last_sent);
        if (send_message(socket, &js, epoch, stamp, js_payload, n) != 0) {
            status = 2;
            break;
        }
        if (tick % base_every == 0 &&
            send_message(socket, &base, epoch, stamp, pack.buf, base_payload(&pack, x, y, yaw_rad)) != 0) {
            status = 2;
            break;
        }
        if (tick % hb_every == 0 &&
            send_message(socket, &hb, epoch, stamp, pack.buf, heartbeat_payload(&pack, "running")) != 0) {
            status = 2;
            break;
        }
    }
    /* going away on purpose: a "shutdown" heartbeat makes the robot GONE at once */
    if (status == 0)
        send_message(socket, &hb, epoch, wall_ns(), pack.buf, heartbeat_payload(&pack, "shutdown"));

    printf("{\"robot\": \"%s\", \"model\": \"%s\", \"epoch\": %llu, \"sent\": {\"js\": %llu, "
           "\"base\": %llu, \"hb\": %llu}, \"wire_order\": [",
           robot, MODEL, (unsigned long long)epoch, (unsigned long long)js.sent,
           (unsigned long long)base.sent, (unsigned long long)hb.sent);
    for (int i = 0; i < N_JOINTS; i++) printf("%s\"%s\"", i ? ", " : "", WIRE_ORDER[i]);
    printf("], \"last_positions\": [");
    for (int i = 0; i < N_JOINTS; i++) printf("%s%.9g", i ? ", " : "", (double)last_sent[i]);
    printf("]}\n");
    fflush(stdout);

done:
    if (socket != NULL) zmq_close(socket);
    zmq_ctx_term(context);
    return status;
}
