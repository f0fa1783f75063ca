/* slot.h -- Redis Cluster hash slots (CRC16/XMODEM of the key or its
 * {hash tag}, mod 16384), as Redis's cluster.c computes them. */
#ifndef FM_SLOT_H
#define FM_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define FM_SLOTS 16384

unsigned fm_slot(const char *key, size_t len);

#endif
