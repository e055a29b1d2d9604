/* spinlock.h - a test-and-set lock for the few structures CPUs share. */
#ifndef MINI_SPINLOCK_H
#define MINI_SPINLOCK_H

#include "io.h"

struct spinlock {
    volatile u32 locked;
};

static inline void spin_lock(struct spinlock *l)
{
    while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        while (l->locked)
            cpu_relax();
}

static inline void spin_unlock(struct spinlock *l) { __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE); }

#endif
