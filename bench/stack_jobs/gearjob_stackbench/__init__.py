"""The jobs the stack benchmark (bench/stack.sh) registers on the provisioned workers."""
