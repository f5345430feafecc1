/*
 * sensors guest: an event-driven monitor.  The host streams sensor readings
 * into the event queue "readings"; the guest keeps statistics per sensor,
 * puts an alarm event back whenever a reading exceeds the threshold, and
 * answers the final "end" with one summary event per sensor and "done".
 *
 * Events (text, at most 64 bytes), host -> guest:
 *   "reading <sensor> <value>"   sensor 0..7, value in milli-degrees
 *   "end"
 * guest -> host:
 *   "alarm <sensor> <value>"
 *   "summary <sensor> n=<count> min=<min> max=<max> mean=<mean>"
 *   "done"
 *
 * Usage: guest.elf [THRESHOLD]   (milli-degrees, default 30000)
 * The guest uses no floating point: vmrpc guests are built with
 * -mgeneral-regs-only.
 */
#include <vmrpc.h>

#define SENSORS 8
#define EVENT_MAX 64

struct stats {
	long count, min, max, sum;
};

static struct vmrpc_evq q;
static struct stats sensors[SENSORS];

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void emit(const char *fmt, ...)
{
	char event[EVENT_MAX];
	va_list ap;
	int len, rc;

	va_start(ap, fmt);
	len = vsnprintf(event, sizeof(event), fmt, ap);
	va_end(ap);
	rc = put_event(&q, event, (size_t)len);
	if (rc) {
		printf("sensors: put: %s (%d)\n", vmrpc_strerror(rc), rc);
		exit(1);
	}
}

/* Parses "reading <sensor> <value>"; returns 0 on success. */
static int parse_reading(const char *event, long *sensor, long *value)
{
	char *end;

	if (strncmp(event, "reading ", 8) != 0)
		return -1;
	*sensor = strtol(event + 8, &end, 10);
	if (*end != ' ' || *sensor < 0 || *sensor >= SENSORS)
		return -1;
	*value = strtol(end + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

int main(int argc, char **argv)
{
	long threshold = argc > 1 ? strtol(argv[1], NULL, 10) : 30000;
	long readings = 0, alarms = 0;
	char event[EVENT_MAX + 1];
	int rc = evq_open("readings", &q);

	if (rc) {
		printf("sensors: open readings: %s (%d)\n", vmrpc_strerror(rc), rc);
		return 1;
	}
	printf("sensors: monitoring, alarm above %ld\n", threshold);
	for (;;) {
		long len = get_event(&q, event, EVENT_MAX), sensor, value;
		struct stats *s;

		if (len < 0) {
			printf("sensors: get: %s (%ld)\n", vmrpc_strerror((int)len), len);
			return 1;
		}
		event[len] = '\0';
		if (strcmp(event, "end") == 0)
			break;
		if (parse_reading(event, &sensor, &value)) {
			printf("sensors: ignoring bad event '%s'\n", event);
			continue;
		}
		s = &sensors[sensor];
		if (s->count == 0 || value < s->min)
			s->min = value;
		if (s->count == 0 || value > s->max)
			s->max = value;
		s->count++;
		s->sum += value;
		readings++;
		if (value > threshold) {
			emit("alarm %ld %ld", sensor, value);
			alarms++;
		}
	}
	for (int i = 0; i < SENSORS; i++) {
		struct stats *s = &sensors[i];

		if (s->count)
			emit("summary %d n=%ld min=%ld max=%ld mean=%ld", i, s->count, s->min, s->max,
			     s->sum / s->count);
	}
	emit("done");
	printf("sensors: %ld readings, %ld alarms\n", readings, alarms);
	return 0;
}
