// ueq/runtime/ilist.hpp — the intrusive doubly linked list every module uses.
//
// What it is for: queues of objects that live elsewhere (waiters on their
// own stacks, parked threads, runnable uthreads, ready epoll entries), kept
// without allocating. A node embeds an `ilist_link<T>`; the list names the
// member: `ilist<T, &T::link>`, or, where the link is not a direct member
// (or not a public one), a policy with `static ilist_link<T>& link(T*)`:
// `basic_ilist<T, Access>`. A node is on at most one list per link at a
// time, and the list never owns or frees it.
//
// Every operation is O(1), splicing whole lists included. remove() needs
// the node to be on this list. A node that leaves has its link cleared.
//
// Thread-safety: none of its own; the owner's lock guards the list and the
// links of the nodes on it.
//
// Usage:
//   struct waiter { ueq::ilist_link<waiter> link; int id; };
//   ueq::ilist<waiter, &waiter::link> q;
//   waiter a{.id = 1}, b{.id = 2};
//   q.push_back(&a);
//   q.push_back(&b);
//   for (waiter* w = q.front(); w; w = q.next(w)) use(w->id);
//   q.remove(&a);
#pragma once

namespace ueq {

template <class T>
struct ilist_link {
  T* prev = nullptr;
  T* next = nullptr;
};

template <class T, class Access>
class basic_ilist {
 public:
  basic_ilist() = default;
  basic_ilist(const basic_ilist&) = delete;
  basic_ilist& operator=(const basic_ilist&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  T* front() const noexcept { return head_; }
  T* back() const noexcept { return tail_; }
  static T* next(const T* n) noexcept { return L(const_cast<T*>(n)).next; }
  static T* prev(const T* n) noexcept { return L(const_cast<T*>(n)).prev; }

  void push_back(T* n) noexcept {
    ilist_link<T>& l = L(n);
    l.prev = tail_;
    l.next = nullptr;
    (tail_ ? L(tail_).next : head_) = n;
    tail_ = n;
  }
  void push_front(T* n) noexcept {
    ilist_link<T>& l = L(n);
    l.prev = nullptr;
    l.next = head_;
    (head_ ? L(head_).prev : tail_) = n;
    head_ = n;
  }
  // The first node, unlinked; null if empty.
  T* pop_front() noexcept {
    T* const n = head_;
    if (!n) return nullptr;
    ilist_link<T>& l = L(n);  // l.prev is null: n is the head
    head_ = l.next;
    (head_ ? L(head_).prev : tail_) = nullptr;
    l.next = nullptr;
    return n;
  }
  void remove(T* n) noexcept {
    ilist_link<T>& l = L(n);
    (l.prev ? L(l.prev).next : head_) = l.next;
    (l.next ? L(l.next).prev : tail_) = l.prev;
    l.prev = l.next = nullptr;
  }
  // Moves every node of `other` to the back (or the front) of this list,
  // in order; `other` is left empty.
  void splice_back(basic_ilist& other) noexcept {
    if (other.empty()) return;
    L(other.head_).prev = tail_;
    (tail_ ? L(tail_).next : head_) = other.head_;
    tail_ = other.tail_;
    other.head_ = other.tail_ = nullptr;
  }
  void splice_front(basic_ilist& other) noexcept {
    if (other.empty()) return;
    L(other.tail_).next = head_;
    (head_ ? L(head_).prev : tail_) = other.tail_;
    head_ = other.head_;
    other.head_ = other.tail_ = nullptr;
  }
  // Forgets every node without touching them (after fork(): the nodes may
  // belong to threads that are gone).
  void clear_unsafe() noexcept { head_ = tail_ = nullptr; }

 private:
  static ilist_link<T>& L(T* n) noexcept { return Access::link(n); }
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

template <class T, ilist_link<T> T::*Member>
struct ilist_member {
  static ilist_link<T>& link(T* n) noexcept { return n->*Member; }
};
template <class T, ilist_link<T> T::*Member>
using ilist = basic_ilist<T, ilist_member<T, Member>>;

}  // namespace ueq
