"""trainers/cli"""
