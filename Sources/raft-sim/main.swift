print("raft-sim: simulator not built yet")
