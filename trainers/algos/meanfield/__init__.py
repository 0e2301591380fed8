"""trainers/algos/meanfield"""
