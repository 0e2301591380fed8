"""trainers/algos/mappo"""
