// The one explicit table of sequence mixers: name -> docs + factory. Adding a mixer is one line
// here plus its module file in layers/mixers/ (which defines <name>_mixer_entry()).
#include "layers/mixers/attention.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

const std::vector<MixerEntry>& mixer_table() {
  static const std::vector<MixerEntry> table = {
      attention_mixer_entry(),
  };
  return table;
}

}  // namespace seqmix::nn
