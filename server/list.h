/* list.h — the intrusive doubly linked list the pools queue their work on. */
#ifndef PX_LIST_H
#define PX_LIST_H

#include <stdbool.h>

/* Intrusive doubly linked list; an unlinked node points to itself. */
typedef struct link {
    struct link *prev, *next;
} link_t;

static inline void list_init(link_t *l)
{
    l->prev = l->next = l;
}

static inline bool list_empty(const link_t *head)
{
    return head->next == head;
}

static inline void list_insert_after(link_t *pos, link_t *l)
{
    l->prev = pos;
    l->next = pos->next;
    pos->next->prev = l;
    pos->next = l;
}

static inline void list_push(link_t *head, link_t *l)
{
    list_insert_after(head->prev, l);
}

static inline void list_unlink(link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    list_init(l);
}

/* Moves every node of `from` to the empty list `to`. */
static inline void list_move(link_t *to, link_t *from)
{
    list_init(to);
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

#endif
