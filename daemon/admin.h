/* admin.h -- the admin service: hello, ping and stats, the operations about
 * the daemon itself. */
#ifndef FM_ADMIN_H
#define FM_ADMIN_H

#include "core.h"

extern const fm_service fm_admin_service;

#endif
