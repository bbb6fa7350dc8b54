// The intrusive list: order after every operation against a std::deque
// model under random operations, links cleared on the way out, and the
// splices.
#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <random>
#include <vector>

#include "ueq/runtime/ilist.hpp"

namespace {
struct node {
  ueq::ilist_link<node> link;
  int id = 0;
};
using list = ueq::ilist<node, &node::link>;

std::vector<int> ids(const list& l) {
  std::vector<int> out;
  for (node* n = l.front(); n; n = list::next(n))
    out.push_back(n->id);
  return out;
}
std::vector<int> ids_backwards(const list& l) {
  std::vector<int> out;
  for (node* n = l.back(); n; n = list::prev(n))
    out.push_back(n->id);
  std::reverse(out.begin(), out.end());
  return out;
}
bool unlinked(const node& n) {
  return n.link.prev == nullptr && n.link.next == nullptr;
}
}  // namespace

TEST_CASE("ilist keeps the order of a deque under random operations", "[ilist]") {
  std::vector<node> nodes(64);
  for (int i = 0; i < 64; ++i)
    nodes[i].id = i;
  std::vector<bool> on(64, false);
  std::deque<int> model;
  list l;
  std::mt19937 rng(11);
  for (int step = 0; step < 20000; ++step) {
    const int i = static_cast<int>(rng() % 64);
    switch (rng() % 4) {
      case 0:
      case 1:
        if (on[i]) break;
        if (rng() % 2) {
          l.push_back(&nodes[i]);
          model.push_back(i);
        } else {
          l.push_front(&nodes[i]);
          model.push_front(i);
        }
        on[i] = true;
        break;
      case 2: {
        node* n = l.pop_front();
        if (model.empty()) {
          REQUIRE(n == nullptr);
          break;
        }
        REQUIRE(n != nullptr);
        REQUIRE(n->id == model.front());
        REQUIRE(unlinked(*n));
        on[n->id] = false;
        model.pop_front();
        break;
      }
      case 3:
        if (!on[i]) break;
        l.remove(&nodes[i]);
        REQUIRE(unlinked(nodes[i]));
        model.erase(std::find(model.begin(), model.end(), i));
        on[i] = false;
        break;
    }
    if (step % 97 == 0) {
      const std::vector<int> want(model.begin(), model.end());
      REQUIRE(ids(l) == want);
      REQUIRE(ids_backwards(l) == want);
      REQUIRE(l.empty() == model.empty());
    }
  }
}

TEST_CASE("ilist splices whole lists to either end and empties the source", "[ilist]") {
  node n[6];
  for (int i = 0; i < 6; ++i)
    n[i].id = i;
  list a, b;
  b.splice_back(a);  // both empty: nothing happens
  REQUIRE(b.empty());
  a.push_back(&n[2]);
  a.push_back(&n[3]);
  b.splice_back(a);
  REQUIRE(a.empty());
  REQUIRE(ids(b) == std::vector<int>{2, 3});
  a.push_back(&n[0]);
  a.push_back(&n[1]);
  b.splice_front(a);
  REQUIRE(a.empty());
  REQUIRE(ids(b) == std::vector<int>{0, 1, 2, 3});
  a.push_back(&n[4]);
  a.push_back(&n[5]);
  b.splice_back(a);
  REQUIRE(ids(b) == std::vector<int>{0, 1, 2, 3, 4, 5});
  REQUIRE(ids_backwards(b) == std::vector<int>{0, 1, 2, 3, 4, 5});
  // Into an empty list, from the front.
  list c;
  c.splice_front(b);
  REQUIRE(b.empty());
  REQUIRE(ids_backwards(c) == std::vector<int>{0, 1, 2, 3, 4, 5});
  c.clear_unsafe();
  REQUIRE(c.empty());
  REQUIRE(c.pop_front() == nullptr);
}
