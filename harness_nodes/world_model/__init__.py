"""World-model rollout server: compact belief state, a learned ensemble and a physics backend that
roll candidate action chunks forward, best-of-N selection with a calibrated veto, and surprise."""
