// Round trips shared by several benchmark areas.
#pragma once

namespace ueq::bench {

// Two uthreads on one vcore ping-pong through two parkers (park, then the
// other's unpark); ns per round trip.
double park_roundtrip_same_vcore(int iters);

}  // namespace ueq::bench
