/* wake.h -- the wake service: signal, signal_many, subscribe, unsubscribe,
 * and the delivery of wakes to local subscribers. */
#ifndef FM_WAKE_H
#define FM_WAKE_H

#include "core.h"

extern const fm_service fm_wake_service;

#endif
