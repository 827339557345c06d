/* A C program built against the installed package with pkg-config alone (poscache-c): it links,
 * and the interface answers as documented without a writer running. */
#include <stdio.h>
#include <string.h>

#include "poscache/poscache.h"

int main(void) {
  poscache_reader* r = poscache_reader_open("poscache_install_check_no_such_segment");
  if (r != NULL || strstr(poscache_last_error(), "no_such_segment") == NULL) {
    fprintf(stderr, "c consumer: expected a failure naming the segment, got '%s'\n",
            poscache_last_error());
    return 1;
  }
  if (strcmp(poscache_status_name(POSCACHE_STALE), "stale") != 0) return 1;
  printf("c consumer: linked; an absent segment says: %s\n", poscache_last_error());
  return 0;
}
