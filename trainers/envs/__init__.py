"""trainers/envs"""
