/* list.h -- an intrusive, circular, doubly linked list with a head node,
 * after libuv's queue.h: the owner embeds an fm_list in its struct;
 * inserting and removing take constant time and no walk; an empty list, and
 * a node on no list, point at themselves. */
#ifndef FM_LIST_H
#define FM_LIST_H

#include <stddef.h>

typedef struct fm_list {
    struct fm_list *prev, *next;
} fm_list;

/* The struct of type `type` whose member `member` is the node n. */
#define fm_list_entry(n, type, member) ((type *)(void *)((char *)(n) - offsetof(type, member)))

/* Every node of head, in order; the loop body must not remove `n`. */
#define fm_list_each(n, head) for ((n) = (head)->next; (n) != (head); (n) = (n)->next)

static inline void fm_list_init(fm_list *l)
{
    l->prev = l->next = l;
}

/* For a head: nothing on it. For a node: on no list. */
static inline int fm_list_empty(const fm_list *l)
{
    return l->next == l;
}

/* The first node, or NULL when the list is empty. */
static inline fm_list *fm_list_first(const fm_list *head)
{
    return head->next != head ? head->next : NULL;
}

/* Puts n in front of at (at the back of a list when at is its head). */
static inline void fm_list_insert_before(fm_list *at, fm_list *n)
{
    n->next = at;
    n->prev = at->prev;
    at->prev->next = n;
    at->prev = n;
}

static inline void fm_list_push_back(fm_list *head, fm_list *n)
{
    fm_list_insert_before(head, n);
}

static inline void fm_list_push_front(fm_list *head, fm_list *n)
{
    fm_list_insert_before(head->next, n);
}

/* Takes n off its list, if it is on one; n is then on none. */
static inline void fm_list_remove(fm_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    fm_list_init(n);
}

#endif
