// ueq-lab's experiments, one file each; `ueq-lab list` shows them in this
// order (the first is fast and always works).
#pragma once

#include "lab.hpp"

namespace ueq::lab {

experiment coalescing_experiment();   // exp_coalescing.cpp
experiment mailboxes_experiment();    // exp_mailboxes.cpp
experiment wake_policy_experiment();  // exp_wake_policy.cpp
experiment backends_experiment();     // exp_backends.cpp
experiment facade_experiment();       // exp_facade.cpp

}  // namespace ueq::lab
