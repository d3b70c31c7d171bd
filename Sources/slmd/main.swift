print("slmd")
