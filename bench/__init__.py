"""`make bench`: the lab's figures beside their targets and its peers; nothing asserted."""
