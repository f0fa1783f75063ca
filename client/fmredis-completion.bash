# bash completion for fmredis -- written in the next commit.
