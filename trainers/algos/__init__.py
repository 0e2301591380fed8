"""trainers/algos"""
