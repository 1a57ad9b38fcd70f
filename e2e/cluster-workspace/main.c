/* Checks that every unit was linked in exactly once, each under its own
 * number, and prints a checksum of their results (the same on every correct
 * build). Exits non-zero otherwise. */

#include <stdio.h>

#ifndef UNITS
#error "compile with -DUNITS=N"
#endif

#define MAX_UNITS 4096

static unsigned long (*units[MAX_UNITS])(unsigned long);
static int registrations;
static int bad_ids;

/* Called by each unit's constructor, before main. */
void register_unit(int id, unsigned long (*run)(unsigned long)) {
  registrations++;
  if (id < 0 || id >= UNITS || id >= MAX_UNITS || units[id] != 0)
    bad_ids++;
  else
    units[id] = run;
}

int main(void) {
  int missing = 0;
  unsigned long checksum = 0;
  for (int i = 0; i < UNITS && i < MAX_UNITS; i++) {
    if (units[i] == 0) {
      printf("unit %d is missing\n", i);
      missing++;
    } else {
      checksum = checksum * 31 + units[i](i);
    }
  }
  if (missing || bad_ids || registrations != UNITS) {
    printf("%d registrations (%d bad or duplicate ids) for %d units\n",
           registrations, bad_ids, UNITS);
    return 1;
  }
  printf("%d units linked\n", UNITS);
  printf("checksum %016lx\n", checksum);
  return 0;
}
