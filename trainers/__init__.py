"""unimarl.trainers"""
