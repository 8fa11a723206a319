// The one explicit table of sequence mixers: name -> docs + factory. Adding a mixer is one line
// here plus its module file in layers/mixers/ (which defines <name>_mixer_entry()).
#include "layers/mixers/attention.h"
#include "layers/mixers/deltanet.h"
#include "layers/mixers/gla.h"
#include "layers/mixers/hgrn2.h"
#include "layers/mixers/linear_attn.h"
#include "layers/mixers/mamba2.h"
#include "layers/mixers/mixer.h"
#include "layers/mixers/retnet.h"

namespace seqmix::nn {

const std::vector<MixerEntry>& mixer_table() {
  static const std::vector<MixerEntry> table = {
      attention_mixer_entry(), linear_attn_mixer_entry(),    retnet_mixer_entry(),
      gla_mixer_entry(),       mamba2_mixer_entry(),         hgrn2_mixer_entry(),
      deltanet_mixer_entry(),  gated_deltanet_mixer_entry(), kda_mixer_entry(),
  };
  return table;
}

}  // namespace seqmix::nn
